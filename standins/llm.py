"""Stand-in for a local OpenAI-compatible LLM server (LM Studio, llama.cpp, vLLM) and for Ollama."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from backlot.standins import _common

log = logging.getLogger("backlot.standins.llm")

DEFAULT_MODELS = "backlot-standin-7b,backlot-standin-tiny"
OLLAMA_VERSION = "0.6.5"
TOKEN_DELAY_S = 0.010  # per generated token at --speed 1; roughly a 7B model on a mid-range GPU
_TOKEN_RE = re.compile(r"\s*(?:[\w'-]+|[^\w\s])")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_STOP = set("""about after again also because before being between could describe does doing each from give
have here into just like make more most much need only other over please really scene shot should show some
such than that their them then there these they this those through under very want what when where which
while will with would write your create frame camera short story finds looks walks runs turns sees takes holds""".split())
SHOTS = ["Wide shot", "Medium close-up", "Low-angle shot", "Over-the-shoulder shot", "Tracking shot",
         "Extreme close-up", "Aerial establishing shot", "Handheld shot", "Dutch-angle shot"]
MOVES = ["the camera dollies in slowly", "the camera pans left", "a slow crane rises", "the frame holds still",
         "the camera pushes in", "the lens racks focus", "the camera drifts sideways", "a whip pan lands"]
LIGHTS = ["golden-hour light", "cold blue moonlight", "flickering neon", "soft overcast daylight",
          "hard tungsten practicals", "low-key chiaroscuro", "hazy backlight", "candlelight"]
MOODS = ["tense", "melancholic", "dreamlike", "quietly hopeful", "ominous", "playful", "bittersweet"]
ACTIONS = ["turns toward the light", "hesitates at the threshold", "drifts through the frame",
           "catches the wind", "falls silent", "comes into focus", "steps out of shadow", "looks back once"]
SOUNDS = ["distant thunder", "a low drone", "rain on glass", "echoing footsteps", "a lone cello", "crackling static"]
TEMPLATES = ["{Shot} of {subj}, as {move}.", "{Subj} {action} under {light}.",
             "The mood is {mood}; {subj2} lingers in the background.", "Cut to {subj2} as {move}.",
             "Sound: {sound} beneath {light}.", "Hold on {subj} while {subj2} {action}."]


def openai_error(status: int, message: str, etype: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> web.Response:
    """A JSON error response in OpenAI's shape."""
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.json_response(body, status=status)


def _mask(key: str) -> str:
    # OpenAI shows a masked key; short keys are omitted because a few shown characters would be most of them.
    return f" {key[:3]}...{key[-4:]}" if len(key) >= 20 else ""


def _text_of(content: Any) -> str:
    """Message content as plain text (a string, or a list of OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def count_tokens(text: str) -> int:
    """A rough token count, consistent with how replies are split into tokens."""
    return len(_TOKEN_RE.findall(text))


def compose(messages: list[dict[str, Any]], model: str, seed: int | None, temperature: float | None) -> str:
    """A short, prompt-dependent shot description, deterministic for a given seed or temperature 0."""
    if temperature == 0:
        salt: object = "greedy"
    elif seed is not None:
        salt = [seed, temperature]
    else:
        salt = secrets.token_hex(8)  # like a real sampler: no seed, no repeatable reply
    material = json.dumps([model, [[m.get("role"), _text_of(m.get("content"))] for m in messages], salt])
    rng = random.Random(hashlib.sha256(material.encode()).digest())
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    found = [w for w in _WORD_RE.findall(users[-1] if users else "") if w.lower() not in _STOP]
    words = list({w.lower(): w for w in found}.values())
    # Verbs and adverbs make odd subjects ("the watching"); keep them only when nothing else is left.
    words = [w for w in words if not w.lower().endswith(("ing", "ly", "ed"))] or words or ["stranger", "horizon"]
    phrases = [w if w[0].isupper() else "the " + w for w in words]
    sentences = []
    # A shot description opens with the framing, as a shot list would.
    for template in [TEMPLATES[0], *rng.sample(TEMPLATES[1:], rng.randint(2, 4))]:
        subj, subj2 = rng.sample(phrases, 2) if len(phrases) > 1 else (phrases[0], "the horizon")
        sentences.append(template.format(
            Shot=rng.choice(SHOTS), subj=subj, Subj=subj[0].upper() + subj[1:], subj2=subj2,
            move=rng.choice(MOVES), light=rng.choice(LIGHTS), mood=rng.choice(MOODS),
            action=rng.choice(ACTIONS), sound=rng.choice(SOUNDS)))
    return " ".join(sentences)


def generate(body: dict[str, Any], limit: int | None, stop: list[str]) -> tuple[list[str], str]:
    """Reply tokens and the finish reason ("stop" or "length") for a validated request."""
    text = compose(body["messages"], body["model"], body.get("seed"), body.get("temperature"))
    cuts = [text.find(s) for s in stop if isinstance(s, str) and s and s in text]
    if cuts:
        text = text[:min(cuts)]
    tokens = _TOKEN_RE.findall(text)
    if limit is not None and len(tokens) > limit:
        return tokens[:limit], "length"
    return tokens, "stop"


class LlmStandin:
    """The HTTP application and the state it serves from."""

    def __init__(self, models: list[str], api_key: str | None, speed: float) -> None:
        self.models = models
        self.api_key = api_key
        self.delay = TOKEN_DELAY_S / speed
        self.created = int(time.time())
        self.app = web.Application(middlewares=[self._middleware])
        r = self.app.router
        r.add_get("/v1/models", self.list_models)
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_get("/api/tags", self.ollama_tags)
        r.add_get("/api/version", self.ollama_version)
        r.add_post("/api/chat", self.ollama_chat)
        r.add_get("/", self.root)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        openai = request.path.startswith("/v1/")
        if openai and self.api_key is not None:
            header = request.headers.get("Authorization", "")
            given = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if not given:
                return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                                    code="invalid_api_key")
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                log.info("rejected a request to %s with a wrong API key", request.path)
                return openai_error(401, f"Incorrect API key provided:{_mask(given)}. Check the key configured for "
                                    "this server.", code="invalid_api_key")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if not openai or exc.status < 400:
                raise
            # OpenAI clients expect JSON errors even for unknown routes and wrong methods.
            return openai_error(exc.status, f"{exc.reason}: {request.method} {request.path}")

    async def root(self, _: web.Request) -> web.Response:
        """The plain-text answer Ollama gives to liveness probes."""
        return web.Response(text="Ollama is running")

    async def list_models(self, _: web.Request) -> web.Response:
        """OpenAI's model list."""
        return web.json_response({"object": "list", "data": [self._model_card(m) for m in self.models]})

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "backlot-standin"}

    def _unknown_model(self, name: str) -> web.Response:
        return openai_error(404, f"The model `{name}` does not exist or you do not have access to it.",
                            code="model_not_found")

    async def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            return openai_error(400, f"We could not parse the JSON body of your request. ({exc})")
        if not isinstance(body, dict):
            return openai_error(400, "The request body must be a JSON object.")
        return body

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """OpenAI chat completions, whole or streamed as server-sent events."""
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        messages, model = body.get("messages"), body.get("model")
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return openai_error(400, "'messages' must be a non-empty array of message objects", param="messages")
        if model not in self.models:
            return self._unknown_model(model)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            return openai_error(400, "max_tokens must be an integer of at least 1", param="max_tokens")
        stop = body.get("stop") or []
        tokens, finish = generate(body, limit, [stop] if isinstance(stop, str) else list(stop))
        prompt_tokens = sum(count_tokens(_text_of(m.get("content"))) + 3 for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                 "total_tokens": prompt_tokens + len(tokens)}
        head = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_backlot_standin"}
        if not body.get("stream"):
            await asyncio.sleep(self.delay * len(tokens))
            choice = {"index": 0, "message": {"role": "assistant", "content": "".join(tokens)},
                      "logprobs": None, "finish_reason": finish}
            return web.json_response({**head, "object": "chat.completion", "choices": [choice], "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

        async def frames() -> AsyncIterator[dict[str, Any] | str]:
            yield chunk({"role": "assistant", "content": ""})
            for tok in tokens:
                await asyncio.sleep(self.delay)
                yield chunk({"content": tok})
            yield chunk({}, finish)
            if include_usage:
                yield {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            yield "[DONE]"

        return await self._stream(request, "text/event-stream", frames(),
                                  lambda f: f"data: {f if isinstance(f, str) else json.dumps(f)}\n\n")

    async def _stream(self, request: web.Request, content_type: str, frames: AsyncIterator[Any],
                      encode: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            async for frame in frames:
                await resp.write(encode(frame).encode())
            await resp.write_eof()
        except ConnectionResetError:
            log.info("client left %s before the reply was complete", request.path)
        return resp

    def _ollama_name(self, name: str) -> str | None:
        base = name[:-len(":latest")] if name.endswith(":latest") else name
        return base if base in self.models else None

    async def ollama_tags(self, _: web.Request) -> web.Response:
        """Ollama's list of local models."""
        stamp = datetime.fromtimestamp(self.created, timezone.utc).isoformat()
        out = []
        for name in self.models:
            m = re.search(r"(\d+(?:\.\d+)?)b\b", name.lower())
            params = float(m.group(1)) if m else 1.1
            out.append({"name": f"{name}:latest", "model": f"{name}:latest", "modified_at": stamp,
                        "size": int(params * 0.6e9), "digest": hashlib.sha256(name.encode()).hexdigest(),
                        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                    "parameter_size": f"{params:g}B", "quantization_level": "Q4_K_M"}})
        return web.json_response({"models": out})

    async def ollama_version(self, _: web.Request) -> web.Response:
        """Ollama's version probe."""
        return web.json_response({"version": OLLAMA_VERSION})

    async def ollama_chat(self, request: web.Request) -> web.StreamResponse:
        """Ollama's chat endpoint: one JSON object, or NDJSON lines when streaming (Ollama's default)."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "invalid JSON body"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response({"error": "messages is required"}, status=400)
        name = str(body.get("model", ""))
        model = self._ollama_name(name)
        if model is None:
            return web.json_response({"error": f'model "{name}" not found, try pulling it first'}, status=404)
        opts = body.get("options") if isinstance(body.get("options"), dict) else {}
        req = {"messages": [m for m in body["messages"] if isinstance(m, dict)], "model": model,
               "seed": opts.get("seed"), "temperature": opts.get("temperature")}
        limit = opts.get("num_predict")
        tokens, finish = generate(req, limit if isinstance(limit, int) and limit > 0 else None, [])
        head = {"model": name, "created_at": datetime.now(timezone.utc).isoformat()}
        prompt_count = sum(count_tokens(_text_of(m.get("content"))) for m in req["messages"])
        eval_ns = int(self.delay * len(tokens) * 1e9)
        done = {**head, "done_reason": finish, "done": True, "total_duration": eval_ns + 1_000_000,
                "load_duration": 500_000, "prompt_eval_count": prompt_count, "prompt_eval_duration": 500_000,
                "eval_count": len(tokens), "eval_duration": eval_ns}
        if body.get("stream") is False:
            await asyncio.sleep(self.delay * len(tokens))
            return web.json_response({**done, "message": {"role": "assistant", "content": "".join(tokens)}})

        async def lines() -> AsyncIterator[dict[str, Any]]:
            for tok in tokens:
                await asyncio.sleep(self.delay)
                yield {**head, "message": {"role": "assistant", "content": tok}, "done": False}
            yield {**done, "message": {"role": "assistant", "content": ""}}

        return await self._stream(request, "application/x-ndjson", lines(), lambda f: json.dumps(f) + "\n")


async def serve(host: str, port: int, standin: LlmStandin) -> None:
    """Listen until SIGTERM or SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A short shutdown timeout so a SIGTERM during a long stream still exits promptly.
    runner = web.AppRunner(standin.app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        real_port = int(runner.addresses[0][1])
        _common.announce("llm", host, real_port, models=standin.models, auth=standin.api_key is not None)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Run the LLM stand-in from the command line."""
    ap = _common.common_parser("llm", "A stand-in OpenAI-compatible (LM Studio/llama.cpp/vLLM) and Ollama server.")
    # The environment variable keeps the key out of `ps` output when that matters.
    ap.add_argument("--api-key", default=os.environ.get("STANDIN_LLM_API_KEY"),
                    help="require this Bearer key on /v1 routes (default: $STANDIN_LLM_API_KEY, else any key)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated model ids (default {DEFAULT_MODELS})")
    args = ap.parse_args(argv)
    _common.check_speed(ap, args.speed)
    if args.data is not None:  # nothing is stored, so no temporary folder is made when none is named
        _common.data_dir(args.data, "llm")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        ap.error("--models needs at least one model id")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, LlmStandin(models, args.api_key or None, args.speed)))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
