"""The LLM stand-in, driven through litellm the way Backlot's LLM client drives a local server."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from backlot.standins.launcher import StandinProcess

pytestmark = pytest.mark.slow

KEY = "sk-test-123"
MODEL = "backlot-standin-7b"
PROMPT = [{"role": "system", "content": "You are a film-making assistant."},
          {"role": "user", "content": "Describe a shot of a lighthouse keeper in a storm over the harbor."}]


@pytest.fixture
async def litellm() -> AsyncIterator[ModuleType]:
    """litellm, imported lazily (seconds), with its cached HTTP clients closed after the test."""
    import litellm as mod  # noqa: PLC0415 - deliberately lazy: the import costs seconds

    mod.suppress_debug_info = True
    yield mod
    # litellm caches an aiohttp-backed client per event loop; close it with this loop, not at exit.
    await mod.close_litellm_async_clients()


@pytest.fixture
def llm(standin: Callable[..., StandinProcess]) -> StandinProcess:
    """An LLM stand-in that requires KEY; --speed 5 keeps the simulated token delay short."""
    return standin("llm", "--api-key", KEY, speed=5)


async def _complete(litellm: ModuleType, sp: StandinProcess, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"model": f"openai/{MODEL}", "api_base": sp.url + "/v1", "api_key": KEY,
                            "messages": PROMPT, "seed": 42, "temperature": 0.7, **kwargs}
    return await litellm.acompletion(**args)


async def test_plain_completion_is_deterministic_and_prompt_dependent(litellm: ModuleType, llm: StandinProcess) -> None:
    first = await _complete(litellm, llm)
    again = await _complete(litellm, llm)
    other = await _complete(litellm, llm, messages=[{"role": "user", "content": "A dragon circles Tokyo at dawn."}])
    text = first.choices[0].message.content
    assert first.id.startswith("chatcmpl-")
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.role == "assistant"
    assert again.choices[0].message.content == text
    assert any(w in text for w in ("lighthouse", "keeper", "storm", "harbor")), text
    assert other.choices[0].message.content != text
    assert "dragon" in other.choices[0].message.content or "Tokyo" in other.choices[0].message.content
    usage = first.usage
    assert usage.completion_tokens > 5 and usage.prompt_tokens > 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_streaming_reassembles_to_the_plain_reply(litellm: ModuleType, llm: StandinProcess) -> None:
    plain = await _complete(litellm, llm)
    stream = await _complete(litellm, llm, stream=True, stream_options={"include_usage": True})
    pieces: list[str] = []
    reasons: list[str | None] = []
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            reasons.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == plain.choices[0].message.content
    assert sum(1 for p in pieces if p) == plain.usage.completion_tokens  # one delta per token
    assert "stop" in reasons


async def test_max_tokens_stops_with_finish_reason_length(litellm: ModuleType, llm: StandinProcess) -> None:
    full = await _complete(litellm, llm)
    cut = await _complete(litellm, llm, max_tokens=4)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 4
    assert full.choices[0].message.content.startswith(cut.choices[0].message.content)


async def test_wrong_key_is_an_authentication_error_that_hides_keys(litellm: ModuleType, llm: StandinProcess) -> None:
    wrong = "sk-wrong-key-0123456789abcdef"
    with pytest.raises(litellm.AuthenticationError) as info:
        await _complete(litellm, llm, api_key=wrong, num_retries=0)
    assert info.value.status_code == 401
    message = str(info.value)
    assert KEY not in message and wrong not in message
    async with aiohttp.ClientSession() as http:
        async with http.get(llm.url + "/v1/models") as resp:  # no Authorization header at all
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_any_key_is_accepted_without_api_key_flag(litellm: ModuleType,
                                                        standin: Callable[..., StandinProcess]) -> None:
    sp = standin("llm", "--models", "alpha,beta-13b", speed=5)
    reply = await litellm.acompletion(model="openai/beta-13b", api_base=sp.url + "/v1", api_key="whatever",
                                      messages=PROMPT, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    async with aiohttp.ClientSession() as http:
        async with http.get(sp.url + "/v1/models") as resp:
            body = await resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["alpha", "beta-13b"]
    assert all(m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"] for m in body["data"])
    assert sp.stop() == 0  # SIGTERM is a clean exit


async def test_bad_requests_get_openai_errors(llm: StandinProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    url = llm.url + "/v1/chat/completions"
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
        async with http.post(url, json={"model": MODEL}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "messages"
        async with http.post(url, json={"model": "no-such-model", "messages": PROMPT}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "model_not_found"


async def test_ollama_tags_version_and_chat(llm: StandinProcess) -> None:
    async with aiohttp.ClientSession() as http:  # Ollama has no auth, so no key here
        async with http.get(llm.url + "/api/tags") as resp:
            tags = await resp.json()
        async with http.get(llm.url + "/api/version") as resp:
            version = await resp.json()
        body = {"model": f"{MODEL}:latest", "messages": PROMPT, "options": {"seed": 42}}
        async with http.post(llm.url + "/api/chat", json={**body, "stream": False}) as resp:
            whole = await resp.json()
        async with http.post(llm.url + "/api/chat", json=body) as resp:  # Ollama streams by default
            assert resp.content_type == "application/x-ndjson"
            lines = [json.loads(line) async for line in resp.content if line.strip()]
    assert [m["name"] for m in tags["models"]] == [f"{MODEL}:latest", "backlot-standin-tiny:latest"]
    for m in tags["models"]:
        assert m["model"] == m["name"] and m["modified_at"] and m["size"] > 0 and len(m["digest"]) == 64
        assert m["details"]["format"] == "gguf" and m["details"]["family"]
        assert m["details"]["parameter_size"].endswith("B") and m["details"]["quantization_level"]
    assert tags["models"][0]["details"]["parameter_size"] == "7B"
    assert isinstance(version["version"], str) and version["version"].count(".") == 2
    assert whole["done"] is True and whole["done_reason"] == "stop" and whole["message"]["content"]
    assert lines[-1]["done"] is True and not any(line["done"] for line in lines[:-1])
    assert "".join(line["message"]["content"] for line in lines) == whole["message"]["content"]
