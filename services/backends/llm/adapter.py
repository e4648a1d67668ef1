"""LLM backend for ``text`` jobs: local OpenAI-compatible and Ollama servers, and cloud models, via LiteLLM.

LiteLLM is imported on first use, off the event loop (``llm_keys.load_litellm``). Keys go to litellm
only; every error is rebuilt as our own sentence, so no key reaches a log, a status or an exception.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import aiohttp
from pydantic import SecretStr

from backlot.services.backends.base import (
    CancelResult,
    FailureCode,
    JobRequest,
    JobStatus,
    OutputFile,
    SessionProvider,
    StatusCode,
    failed,
    failure_for,
)
from backlot.services.backends.llm.errors import translate_llm_error
from backlot.services.backends.llm.keys import (
    KNOWN_BASES,
    api_base_for,
    check_key,
    configured_key,
    import_litellm,
    key_status,
    litellm_loaded,
    load_litellm,
    provider_of,
)
from backlot.services.backends.llm.probe import KIND, TASKS
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import request
from backlot.services.models import FoundBy, ServiceRecord

__all__ = ["LlmBackend", "models_for", "cloud_backends", "key_status", "check_key", "load_litellm",
           "import_litellm", "close_litellm_clients", "KNOWN_BASES"]

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1  # seconds between PROGRESS statuses: ~10 a second is all a text view can show
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=2)
# Keyless local servers get this, so litellm never falls back to OPENAI_API_KEY and sends a real key there.
NO_KEY = "no-key"


@dataclass(frozen=True)
class _End:
    """The reply is complete (``text`` is set when it came whole, not streamed)."""

    finish_reason: str | None
    tokens: int | None = None
    text: str | None = None


_CANCELLED = object()  # put on a run's queue when its reading task was cancelled (the stream is closed)


@dataclass
class _Run:
    """A reply in progress: the task reading it and the queue it fills (deltas, then _End or an error)."""

    task: asyncio.Task[None]
    queue: asyncio.Queue[Any]


async def models_for(record: ServiceRecord, session: aiohttp.ClientSession, *, api_key: SecretStr | None = None,
                     timeout: aiohttp.ClientTimeout = PROBE_TIMEOUT) -> list[str]:
    """A local server's models: from discovery's record, else asked (``/v1/models`` or Ollama's ``/api/tags``)."""
    known = record.details.get("models")
    if isinstance(known, list) and known:
        return [str(m) for m in known]
    ollama = record.protocol == "ollama"
    url = record.base_url + ("/api/tags" if ollama else "/v1/models")
    headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key and not ollama else None
    reply = await request(session, "GET", url, timeout=timeout, service=record.id, headers=headers,
                          max_bytes=1024 * 1024)
    if reply.status in (401, 403):
        raise ServiceError(f"invalid key for {record.id}", ErrorClass.CLIENT_ERROR, status=reply.status)
    if reply.status != 200:
        raise ServiceError(f"model list answered HTTP {reply.status}", ErrorClass.HTTP_ERROR, service=record.id,
                           status=reply.status)
    body = reply.json(record.id)
    items = body.get("models" if ollama else "data") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ServiceError("the model list has an unexpected shape", ErrorClass.BAD_RESPONSE, service=record.id)
    return [str(m.get("name" if ollama else "id")) for m in items if isinstance(m, dict)]


def _check_params(params: Mapping[str, Any]) -> str | None:
    """A sentence naming the first bad parameter, or None."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    mt, temp, seed, system = (params.get(k) for k in ("max_tokens", "temperature", "seed", "system"))
    if mt is not None and not (is_int(mt) and mt >= 1):
        return "max_tokens must be a whole number of at least 1"
    if temp is not None and not (isinstance(temp, (int, float)) and not isinstance(temp, bool) and 0 <= temp <= 2):
        return "temperature must be a number from 0 to 2"
    if seed is not None and not is_int(seed):
        return "seed must be a whole number"
    if system is not None and not isinstance(system, str):
        return "system must be text"
    return None


class LlmBackend:
    """One LLM endpoint (a discovered server, or one cloud provider's configured models) running ``text`` jobs."""

    kind = KIND
    read_timeout = 120.0  # longest silence allowed between response bytes (a whole reply when not streaming)
    connect_timeout = 5.0

    def __init__(self, record: ServiceRecord, session: SessionProvider, *, route: str, models: Sequence[str],
                 api_base: str | None, provider: str, api_key: SecretStr | None = None) -> None:
        self.record = record
        self.models = list(models)
        self.route = route  # litellm's provider prefix: "openai", "ollama_chat", or "" for cloud model names
        self.api_base = api_base
        self.provider = provider
        self._session = session
        self._key = api_key
        self._runs: dict[str, _Run] = {}

    @classmethod
    def for_server(cls, record: ServiceRecord, session: SessionProvider, *, api_key: SecretStr | None = None
                   ) -> LlmBackend:
        """A discovered local server: protocol "openai" (LM Studio, llama.cpp, vLLM) or "ollama"."""
        models = [str(m) for m in record.details.get("models") or []]
        if record.protocol == "ollama":
            return cls(record, session, route="ollama_chat", models=models, api_base=record.base_url,
                       provider=record.id)
        return cls(record, session, route="openai", models=models, api_base=record.base_url + "/v1",
                   provider=record.id, api_key=api_key)

    @classmethod
    def for_cloud(cls, models: Sequence[str], session: SessionProvider, *, keys: Mapping[str, SecretStr] | None = None,
                  api_base: str | None = None) -> LlmBackend:
        """Configured cloud models of one provider (``gpt-4o-mini``, ``anthropic/claude-...``), keyed from settings."""
        provider = provider_of(models[0])
        base = api_base or KNOWN_BASES.get(provider, "")
        record = ServiceRecord(KIND, provider, 443, base, "litellm", title=f"{provider} (cloud)",
                               found_by=FoundBy.CLOUD, capabilities=("text",),
                               details={"models": list(models), "provider": provider, "cloud": True})
        return cls(record, session, route="", models=models, api_base=api_base, provider=provider,
                   api_key=configured_key(keys, provider))

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this backend can run."""
        return ("text",)

    async def probe(self) -> dict[str, Any]:
        """The models on offer and where they are served from."""
        if self.route:
            self.models = await models_for(self.record, self._session(), api_key=self._key)
        return {"models": list(self.models), "provider": self.provider, "protocol": self.record.protocol}

    async def check_key(self) -> str:
        """The zero-token key check for this backend's key ("valid", "invalid key", "unreachable", ...)."""
        if self._key is None:
            return "no key configured"
        return await check_key(api_base_for(self.api_base or self.provider), self._key, session=self._session())

    async def _pick_model(self, requested: Any) -> str:
        """The model to ask: ``requested`` when offered (Ollama's ":latest" may be left off), else the first."""
        if not self.models and self.route:
            self.models = await models_for(self.record, self._session(), api_key=self._key)
        if requested is None:
            if not self.models:
                raise ServiceError(f"{self.record.id} offers no model; name one in params.model",
                                   ErrorClass.CLIENT_ERROR)
            return self.models[0]
        name = str(requested)
        if not self.models or name in self.models:
            return name
        if name + ":latest" in self.models:
            return name + ":latest"
        raise ServiceError(f"{self.record.id} has no model {name!r} (it has {', '.join(self.models)})",
                           ErrorClass.CLIENT_ERROR)

    def _call_args(self, model: str, messages: list[dict[str, Any]], params: Mapping[str, Any],
                   stream: bool) -> dict[str, Any]:
        import httpx  # litellm's own dependency, loaded with it

        args: dict[str, Any] = {
            "model": f"{self.route}/{model}" if self.route else model, "messages": messages, "stream": stream,
            "timeout": httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
            # The job manager fails over; retries here would only hide a dead backend for longer.
            "num_retries": 0, "max_retries": 0, "drop_params": True}
        if self.api_base:
            args["api_base"] = self.api_base
        if self._key is not None:
            args["api_key"] = self._key.get_secret_value()
        elif self.route == "openai":
            args["api_key"] = NO_KEY
        args.update({k: params[k] for k in ("max_tokens", "temperature", "seed") if params.get(k) is not None})
        return args

    async def _check_cloud_key(self, model: str) -> None:
        """Refuse early when a cloud model has no key at all (litellm would call that a server error)."""
        if self.route or self._key is not None:
            return
        litellm = await load_litellm()
        missing = litellm.validate_environment(model=model).get("missing_keys") or []
        if missing:
            raise ServiceError(f"no key for {self.provider}: set {' or '.join(missing)}, or llm_keys.{self.provider} "
                               "in Backlot's settings", ErrorClass.CLIENT_ERROR)

    def _error(self, err: BaseException, model: str) -> ServiceError:
        secrets = [self._key.get_secret_value()] if self._key is not None else []
        # Only a keyless local OpenAI-style server is sent no real key; elsewhere litellm may use the environment.
        return translate_llm_error(err, who=self.record.id, provider=self.provider, model=model,
                                   key_configured=self._key is not None or self.route != "openai",
                                   timeouts=(self.connect_timeout, self.read_timeout), secrets=secrets)

    async def _deltas(self, args: dict[str, Any], meta: dict[str, Any]) -> AsyncIterator[str]:
        """Text deltas of one streamed reply; the stream is closed however iteration ends (cancel included)."""
        litellm = await load_litellm()
        stream = await litellm.acompletion(**args)
        try:
            async for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                meta["finish_reason"] = choice.finish_reason or meta.get("finish_reason")
                if choice.delta.content:
                    yield choice.delta.content
        finally:
            await stream.aclose()

    async def _pump(self, args: dict[str, Any], queue: asyncio.Queue[Any]) -> None:
        """Read the reply into ``queue``; runs as its own task so cancel() can stop it from outside."""
        try:
            if args["stream"]:
                meta: dict[str, Any] = {}
                async for delta in self._deltas(args, meta):
                    queue.put_nowait(delta)
                queue.put_nowait(_End(meta.get("finish_reason")))
            else:
                litellm = await load_litellm()
                reply = await litellm.acompletion(**args)
                choice = reply.choices[0]
                tokens = getattr(getattr(reply, "usage", None), "completion_tokens", None)
                queue.put_nowait(_End(choice.finish_reason, tokens, choice.message.content or ""))
        except asyncio.CancelledError:
            queue.put_nowait(_CANCELLED)  # whoever cancelled us, the consumer must not wait on an empty queue
            raise
        except Exception as err:  # noqa: BLE001 - handed to the consumer, which turns it into a FAILED status
            queue.put_nowait(err)

    async def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Ask for a reply; PROGRESS with the text so far, then FINISHED with ``<job id>.txt``."""
        params = job.params
        problem = _check_params(params) or (None if job.prompt.strip() else "the prompt is empty")
        if problem:
            yield failed(problem, FailureCode.VALIDATION)
            return
        try:
            model = await self._pick_model(params.get("model"))
            await self._check_cloud_key(model)
        except ServiceError as err:
            yield failed(str(err), failure_for(err))
            return
        system = params.get("system")
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": job.prompt})
        args = self._call_args(model, messages, params, bool(params.get("stream", True)))
        log.debug("job %s: asking %s on %s (stream=%s)", job.id, model, self.record.id, args["stream"])
        yield JobStatus(StatusCode.RUNNING, message=f"asking {model}", unit="tokens", remote_ref=job.id)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        run = _Run(asyncio.create_task(self._pump(args, queue), name=f"llm-reply-{job.id}"), queue)
        self._runs[job.id] = run
        try:
            async for status in self._statuses(job, model, run):
                yield status
        finally:
            self._runs.pop(job.id, None)
            if not run.task.done():
                run.task.cancel()
            await asyncio.wait({run.task})

    async def _statuses(self, job: JobRequest, model: str, run: _Run) -> AsyncIterator[JobStatus]:
        parts: list[str] = []
        last = 0.0
        pending = False  # text arrived since the last PROGRESS
        while True:
            wait = max(0.0, last + PROGRESS_INTERVAL - time.monotonic()) if pending else None
            try:
                async with asyncio.timeout(wait):
                    item = await run.queue.get()
            except TimeoutError:  # a burst ended inside the throttle window: show it now
                item = None
            if isinstance(item, str):
                parts.append(item)
                pending = True
            if pending and time.monotonic() - last >= PROGRESS_INTERVAL:
                last, pending = time.monotonic(), False
                yield JobStatus(StatusCode.PROGRESS, step=len(parts), unit="tokens", message=f"{len(parts)} tokens",
                                remote_ref=job.id, detail={"text": "".join(parts), "model": model})
            if item is None or isinstance(item, str):
                continue
            break
        if item is _CANCELLED:
            yield JobStatus(StatusCode.CANCELLED, message="cancelled; the reply stream was closed", remote_ref=job.id)
            return
        if isinstance(item, BaseException):
            err = self._error(item, model)
            log.info("job %s on %s failed: %s", job.id, self.record.id, err)
            yield failed(str(err), failure_for(err))
            return
        text = item.text if item.text is not None else "".join(parts)
        path = job.output_dir / Path(f"{job.id}.txt").name
        await asyncio.to_thread(_write_text, path, text)
        tokens = item.tokens if item.tokens is not None else len(parts)
        yield JobStatus(StatusCode.SUCCEEDED, fraction=1.0, step=tokens, unit="tokens", message=f"{tokens} tokens",
                        remote_ref=job.id, outputs=(OutputFile.of(path),),
                        detail={"text": text, "model": model, "finish_reason": item.finish_reason})

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Stop a reply in progress: its stream is closed before this returns."""
        run = self._runs.get(remote_ref)
        if run is None or run.task.done():
            return CancelResult(False, f"no reply in progress for job {remote_ref}")
        run.task.cancel()
        await asyncio.wait({run.task})
        if not run.task.cancelled():  # it finished while we were cancelling: the reply stands
            return CancelResult(False, "the reply had already finished")
        return CancelResult(True, "stopped; the reply stream is closed")

    async def lookup(self, remote_ref: str, job: JobRequest) -> AsyncIterator[JobStatus]:
        """An LLM reply lives only in the connection that asked for it, so nothing survives a restart."""
        yield failed("an LLM reply cannot be resumed after a restart; submit it again", FailureCode.UNKNOWN_REMOTE)

    async def close(self) -> None:
        """Stop every reply in progress (each consumer then sees CANCELLED)."""
        await asyncio.gather(*(self.cancel(ref) for ref in list(self._runs)))

    @overload
    async def complete(self, messages: list[dict[str, Any]], *, model: str | None = ..., stream: Literal[False] = ...,
                       **params: Any) -> str: ...

    @overload
    async def complete(self, messages: list[dict[str, Any]], *, model: str | None = ..., stream: Literal[True],
                       **params: Any) -> AsyncIterator[str]: ...

    async def complete(self, messages: list[dict[str, Any]], *, model: str | None = None, stream: bool = False,
                       **params: Any) -> str | AsyncIterator[str]:
        """For the socket API's ``llm.complete``: the reply, or an iterator of text deltas; ServiceError on failure."""
        problem = _check_params(params)
        if problem:
            raise ServiceError(problem, ErrorClass.CLIENT_ERROR)
        name = await self._pick_model(model)
        await self._check_cloud_key(name)
        args = self._call_args(name, messages, params, stream)
        if stream:
            return self._translated(self._deltas(args, {}), name)
        try:
            litellm = await load_litellm()
            reply = await litellm.acompletion(**args)
        except Exception as err:
            raise self._error(err, name) from err
        return str(reply.choices[0].message.content or "")

    async def _translated(self, deltas: AsyncIterator[str], model: str) -> AsyncIterator[str]:
        try:
            async for delta in deltas:
                yield delta
        except Exception as err:
            raise self._error(err, model) from err


def cloud_backends(models: Sequence[str], session: SessionProvider, keys: Mapping[str, SecretStr] | None = None
                   ) -> list[LlmBackend]:
    """One backend per provider for the configured cloud model names (``Settings.llm_models``)."""
    by_provider: dict[str, list[str]] = {}
    for model in models:
        by_provider.setdefault(provider_of(model), []).append(model)
    return [LlmBackend.for_cloud(names, session, keys=keys) for names in by_provider.values()]


async def close_litellm_clients() -> None:
    """Close the HTTP clients litellm caches per event loop (call before that loop ends); no-op if never imported."""
    litellm = litellm_loaded()
    closer = getattr(litellm, "close_litellm_async_clients", None) if litellm is not None else None
    if closer is not None:
        await closer()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
