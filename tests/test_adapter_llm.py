"""The LLM backend against the real LLM stand-in (OpenAI-compatible and Ollama routes), through LiteLLM."""
from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from pydantic import SecretStr

from backlot.services.backends.base import Backend, FailureCode, JobRequest, JobStatus, StatusCode
from backlot.services.backends.llm.adapter import (
    LlmBackend,
    check_key,
    close_litellm_clients,
    cloud_backends,
    import_litellm,
    key_status,
    models_for,
)
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.models import ServiceKind, ServiceRecord
from backlot.standins.launcher import StandinProcess
from tests.conftest import ROOT
from tests.helpers import BlackHoles

pytestmark = pytest.mark.slow

# Long enough that the stand-in shows a masked form (first 3 + last 4) that is not the key itself.
KEY = "sk-backlot-right-0123456789abcdef"
WRONG = "sk-backlot-wrong-fedcba9876543210"
MODEL = "backlot-standin-7b"
PROMPT = "Describe a shot of a lighthouse keeper in a storm over the harbor."
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpcore", "openai", "aiohttp")


@pytest.fixture(scope="session")
def litellm_module() -> ModuleType:
    """litellm, imported once for the whole session (the import takes seconds)."""
    return import_litellm()


@pytest.fixture
async def lit(litellm_module: ModuleType) -> AsyncIterator[ModuleType]:
    """litellm for one test; the clients it caches for this test's loop are closed with the loop."""
    yield litellm_module
    await close_litellm_clients()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A session standing in for the pool's."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def llm(standin: Callable[..., StandinProcess]) -> StandinProcess:
    """A stand-in that requires KEY on /v1 (speed 5: 2 ms a token)."""
    return standin("llm", "--api-key", KEY, speed=5)


def record_for(port: int, protocol: str = "openai", models: list[str] | None = None) -> ServiceRecord:
    """A record as discovery would make it."""
    details = {"models": models} if models is not None else {}
    return ServiceRecord(ServiceKind("llm"), "127.0.0.1", port, f"http://127.0.0.1:{port}", protocol,
                         capabilities=("text",), details=details)


def server(sp_or_port: StandinProcess | int, http: aiohttp.ClientSession, key: str | None = KEY,
           protocol: str = "openai", models: list[str] | None = None) -> LlmBackend:
    """A backend for a local server."""
    port = sp_or_port if isinstance(sp_or_port, int) else sp_or_port.port
    if models is None and protocol == "openai":
        models = [MODEL, "backlot-standin-tiny"]
    return LlmBackend.for_server(record_for(port, protocol, models), lambda: http,
                                 api_key=SecretStr(key) if key else None)


def job(tmp_path: Path, job_id: str = "job-1", /, **params: object) -> JobRequest:
    """A text job writing into tmp_path/out."""
    return JobRequest(job_id, "text", PROMPT, params=dict(params), output_dir=tmp_path / "out")


async def run(backend: LlmBackend, request: JobRequest) -> list[JobStatus]:
    """Every status of one job."""
    return [s async for s in backend.submit(request)]


def no_session() -> aiohttp.ClientSession:
    """A session provider for tests that must not touch HTTP."""
    raise AssertionError("no HTTP request was expected")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition another process makes true (checked every 20 ms, bounded)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_streamed_reply_shows_progress_and_writes_a_text_file(lit: ModuleType, http: aiohttp.ClientSession,
                                                                     standin: Callable[..., StandinProcess],
                                                                     tmp_path: Path) -> None:
    backend = server(standin("llm", "--api-key", KEY, speed=0.5), http)  # 20 ms a token: ~1 s of streaming
    assert isinstance(backend, Backend) and backend.capabilities == ("text",)
    statuses = await run(backend, job(tmp_path, seed=7, temperature=0.7, system="You are a film-making assistant."))
    codes = [s.code for s in statuses]
    assert codes[0] is StatusCode.RUNNING and statuses[0].remote_ref == "job-1"
    assert codes[-1] is StatusCode.SUCCEEDED, statuses[-1]
    progress = [s for s in statuses if s.code is StatusCode.PROGRESS]
    done = statuses[-1]
    text = done.detail["text"]
    assert any(w in text for w in ("lighthouse", "keeper", "storm", "harbor")), text
    # Text grows token by token; updates are throttled (~10/s), so there are fewer of them than tokens.
    steps = [s.step or 0 for s in progress]
    assert len(progress) >= 2
    assert len(progress) < (done.step or 0)
    assert steps == sorted(set(steps))
    for before, after in zip(progress, progress[1:]):
        assert after.detail["text"].startswith(before.detail["text"])
    assert text.startswith(progress[-1].detail["text"])
    [out] = done.outputs
    assert out.path == (tmp_path / "out" / "job-1.txt").resolve()
    assert out.mime == "text/plain" and out.path.read_text(encoding="utf-8") == text
    assert out.bytes == len(text.encode())
    assert done.detail["model"] == MODEL and done.detail["finish_reason"] == "stop"


async def test_plain_reply_matches_the_streamed_one(lit: ModuleType, llm: StandinProcess,
                                                    http: aiohttp.ClientSession, tmp_path: Path) -> None:
    backend = server(llm, http)
    streamed = await run(backend, job(tmp_path, "a", seed=3, temperature=0.5))
    plain = await run(backend, job(tmp_path, "b", seed=3, temperature=0.5, stream=False))
    assert [s.code for s in plain] == [StatusCode.RUNNING, StatusCode.SUCCEEDED]
    assert plain[-1].detail["text"] == streamed[-1].detail["text"]
    assert plain[-1].step == streamed[-1].step  # usage's completion tokens = one delta per token
    assert (tmp_path / "out" / "b.txt").read_text(encoding="utf-8") == plain[-1].detail["text"]
    short = await run(backend, job(tmp_path, "c", seed=3, temperature=0.5, max_tokens=4, model="backlot-standin-tiny"))
    assert short[-1].step == 4 and short[-1].detail["finish_reason"] == "length"
    assert short[-1].detail["model"] == "backlot-standin-tiny"


async def test_complete_helper_returns_text_or_deltas(lit: ModuleType, llm: StandinProcess,
                                                      http: aiohttp.ClientSession) -> None:
    backend = server(llm, http)
    messages = [{"role": "user", "content": PROMPT}]
    whole = await backend.complete(messages, seed=11, temperature=0.2)
    deltas = [d async for d in await backend.complete(messages, stream=True, seed=11, temperature=0.2)]
    assert len(deltas) > 5 and "".join(deltas) == whole


async def test_ollama_route(lit: ModuleType, llm: StandinProcess, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    rec = record_for(llm.port, "ollama")  # no model list: asked from /api/tags
    assert await models_for(rec, http) == [f"{MODEL}:latest", "backlot-standin-tiny:latest"]
    backend = LlmBackend.for_server(rec, lambda: http)
    statuses = await run(backend, job(tmp_path, model="backlot-standin-tiny", seed=5))
    assert statuses[-1].code is StatusCode.SUCCEEDED, statuses[-1]
    assert statuses[-1].detail["model"] == "backlot-standin-tiny:latest"
    assert any(s.code is StatusCode.PROGRESS for s in statuses)
    plain = await run(backend, job(tmp_path, "p", model="backlot-standin-tiny", seed=5, stream=False))
    assert plain[-1].detail["text"] == statuses[-1].detail["text"]


async def test_wrong_key_is_an_invalid_key(lit: ModuleType, llm: StandinProcess, http: aiohttp.ClientSession,
                                           tmp_path: Path) -> None:
    bad = server(llm, http, key=WRONG)
    statuses = await run(bad, job(tmp_path))
    assert statuses[-1].code is StatusCode.FAILED
    assert statuses[-1].message == f"invalid key for llm@127.0.0.1:{llm.port}"
    assert statuses[-1].failure is FailureCode.VALIDATION
    assert not (tmp_path / "out" / "job-1.txt").exists()
    with pytest.raises(ServiceError) as info:
        await bad.complete([{"role": "user", "content": "hi"}])
    assert info.value.error_class is ErrorClass.CLIENT_ERROR and info.value.status == 401
    assert await check_key(llm.url + "/v1", WRONG, session=http) == "invalid key"
    assert await check_key(llm.url + "/v1", SecretStr(KEY), session=http) == "valid"
    assert await bad.check_key() == "invalid key"
    assert await server(llm, http).check_key() == "valid"
    keyless = await run(server(llm, http, key=None), job(tmp_path, "k"))
    assert keyless[-1].message == f"invalid key for llm@127.0.0.1:{llm.port}: none is configured"


async def test_closed_port_and_silent_server(lit: ModuleType, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    holes = BlackHoles(1)
    try:
        closed, silent = holes.closed_ports[0], holes.ports[0]
        statuses = await run(server(closed, http), job(tmp_path))
        assert statuses[-1].code is StatusCode.FAILED and statuses[-1].failure is FailureCode.UNREACHABLE
        assert statuses[-1].message == f"llm@127.0.0.1:{closed} unreachable: connection refused (is it running?)"
        assert await check_key(f"http://127.0.0.1:{closed}/v1", KEY, session=http) == "unreachable"
        with pytest.raises(ServiceError) as info:
            await server(closed, http).complete([{"role": "user", "content": "hi"}])
        assert info.value.error_class is ErrorClass.REFUSED
        # A server that takes the connection and never answers: bounded by the adapter's own timeout.
        slow = server(silent, http)
        slow.read_timeout = 0.5
        statuses = await run(slow, job(tmp_path, "s"))
        assert statuses[-1].failure is FailureCode.TIMEOUT, statuses[-1]
        assert "did not answer in time" in statuses[-1].message
    finally:
        holes.close()


async def test_dns_failure_is_unreachable(lit: ModuleType, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    rec = ServiceRecord(ServiceKind("llm"), "no-such-host.invalid", 80, "http://no-such-host.invalid", "openai",
                        details={"models": [MODEL]})
    statuses = await run(LlmBackend.for_server(rec, lambda: http), job(tmp_path))
    assert statuses[-1].failure is FailureCode.UNREACHABLE
    assert statuses[-1].message.endswith("unreachable: host name not found")
    assert await check_key("http://no-such-host.invalid/v1", KEY, session=http) == "unreachable"


async def test_cancel_closes_the_stream(lit: ModuleType, standin: Callable[..., StandinProcess],
                                        http: aiohttp.ClientSession, tmp_path: Path) -> None:
    sp = standin("llm", "--api-key", KEY, speed=0.05)  # 200 ms a token: the reply streams for many seconds
    backend = server(sp, http)
    statuses: list[JobStatus] = []
    first = asyncio.Event()

    async def consume(request: JobRequest) -> None:
        async for status in backend.submit(request):
            statuses.append(status)
            if status.code is StatusCode.PROGRESS:
                first.set()

    task = asyncio.create_task(consume(job(tmp_path, max_tokens=4096)))
    await asyncio.wait_for(first.wait(), 10)
    result = await backend.cancel("job-1")
    assert result.confirmed, result
    await asyncio.wait_for(task, 5)
    assert statuses[-1].code is StatusCode.CANCELLED
    await until(lambda: sum("client left /v1/chat/completions" in line for line in sp.output) == 1)
    assert not (await backend.cancel("job-1")).confirmed  # nothing left to stop
    # Cancelling the consuming task stops the stream too.
    first.clear()
    task = asyncio.create_task(consume(job(tmp_path, "job-2", max_tokens=4096)))
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: sum("client left /v1/chat/completions" in line for line in sp.output) == 2)
    assert not backend._runs
    lost = [s async for s in backend.lookup("job-2", job(tmp_path, "job-2"))]
    assert lost[-1].failure is FailureCode.UNKNOWN_REMOTE


async def test_bad_parameters_fail_before_any_request(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    backend = server(9, http)  # port 9: nothing listens, so any request would fail as unreachable instead
    cases: list[tuple[dict[str, object], str]] = [
        ({"max_tokens": 0}, "max_tokens"), ({"temperature": "hot"}, "temperature"), ({"seed": 1.5}, "seed"),
        ({"model": "gpt-9"}, "has no model 'gpt-9'")]
    for params, words in cases:
        statuses = await run(backend, job(tmp_path, **params))
        assert [s.code for s in statuses] == [StatusCode.FAILED], params
        assert statuses[0].failure is FailureCode.VALIDATION and words in statuses[0].message


async def test_key_status_and_missing_keys_use_no_network(lit: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("key_status touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    models = ["gpt-4o-mini", "anthropic/claude-3-5-sonnet-20240620"]
    status = await key_status(models, {"openai": SecretStr("sk-in-backlot-settings")})
    assert status == {"openai": {"present": True, "missing": []},
                      "anthropic": {"present": False, "missing": ["ANTHROPIC_API_KEY"]}}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    assert (await key_status(models))["anthropic"] == {"present": True, "missing": []}
    assert (await key_status(models))["openai"] == {"present": False, "missing": ["OPENAI_API_KEY"]}
    backends = cloud_backends(["gpt-4o-mini", "gpt-4o", models[1]], no_session, {"anthropic": SecretStr("sk-x")})
    assert [(b.record.id, b.models) for b in backends] == [("llm@openai:443", ["gpt-4o-mini", "gpt-4o"]),
                                                           ("llm@anthropic:443", [models[1]])]
    # No key anywhere: refused before any request, as a missing key rather than a server error.
    statuses = await run(backends[0], job(tmp_path, model="gpt-4o"))
    assert [s.code for s in statuses] == [StatusCode.FAILED]
    assert statuses[0].failure is FailureCode.VALIDATION
    assert statuses[0].message == "no key for openai: set OPENAI_API_KEY, or llm_keys.openai in Backlot's settings"


async def test_keys_never_reach_logs_statuses_or_errors(lit: ModuleType, llm: StandinProcess,
                                                        http: aiohttp.ClientSession, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    for name in LITELLM_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    texts: list[str] = []
    for key, job_id in ((WRONG, "w"), (KEY, "r")):
        backend = server(llm, http, key=key)
        for request in (job(tmp_path, job_id), job(tmp_path, job_id + "p", stream=False)):
            statuses = await run(backend, request)
            texts += [repr(s) for s in statuses] + [str(s.to_dict()) for s in statuses]
        try:
            await backend.complete([{"role": "user", "content": "hi"}])
        except ServiceError as err:
            texts += [str(err), repr(err), "".join(traceback.format_exception(err))]
        texts += [await backend.check_key(), repr(backend), repr(backend.__dict__)]
    assert statuses[-1].code is StatusCode.SUCCEEDED  # the right key did work
    assert any("invalid key" in t for t in texts)
    assert "POST Request Sent from LiteLLM" in caplog.text  # litellm's debug logging was on
    printed = capfd.readouterr()  # litellm also prints through its own stderr handler
    for secret in (KEY, WRONG):
        assert secret not in caplog.text
        assert not any(secret in t for t in texts)
        assert secret not in printed.out and secret not in printed.err


def test_importing_the_module_does_not_import_litellm() -> None:
    code = ("import sys, services.backends.llm.adapter\n"
            "assert 'litellm' not in sys.modules, 'litellm was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
