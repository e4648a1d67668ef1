"""A backend kind is one spec: a kind made in this test is discovered, health-checked and routed to.

No core module knows about "tinyfoley"; it exists only as the spec registered here, which is the
proof that discovery, health, the router, the configuration defaults and adapter creation iterate
the registry instead of naming kinds.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from backlot.services.backends import registry
from backlot.services.backends.base import CancelResult, JobRequest, JobStatus, OutputFile, SessionProvider, StatusCode
from backlot.services.backends.spec import BackendSpec, Fingerprint, Identity, ProbeContext, json_or_none
from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import HealthSampled, JobUpdated
from backlot.services.http import get_json, request
from backlot.services.models import HealthSample, JobState, ServiceKind, ServiceRecord, ServiceState
from tests.helpers import EventWaiter

KIND = ServiceKind("tinyfoley")


async def _fingerprint(ctx: ProbeContext) -> Identity | None:
    body = await json_or_none(ctx, "/tiny/about", 4096)
    if isinstance(body, dict) and body.get("name") == "TinyFoley":
        return Identity(KIND, "tiny-rest", str(body.get("version", "")), "TinyFoley")
    return None


async def _health(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    body, reply = await get_json(session, rec.base_url + "/tiny/queue", timeout=timeout, service=rec.id)
    return HealthSample(rec.id, time.time(), True, reply.latency_ms, queue_depth=int(body["waiting"]))


class TinyFoleyBackend:
    """Renders a "sound" by asking the server for bytes and saving them as the job's output."""

    kind = KIND

    def __init__(self, record: ServiceRecord, session: SessionProvider) -> None:
        self.record = record
        self._session = session

    @property
    def capabilities(self) -> tuple[str, ...]:
        return ("sound_effects",)

    async def probe(self) -> dict[str, Any]:
        return {}

    async def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        yield JobStatus(StatusCode.QUEUED, remote_ref="tiny-1")
        timeout = aiohttp.ClientTimeout(total=5)
        reply = await request(self._session(), "POST", self.record.base_url + "/tiny/render", timeout=timeout,
                              json_body={"prompt": job.prompt}, service=self.record.id)
        job.output_dir.mkdir(parents=True, exist_ok=True)
        out = job.output_dir / "foley.raw"
        out.write_bytes(reply.body)
        yield JobStatus(StatusCode.SUCCEEDED, fraction=1.0, outputs=(OutputFile.of(out),), message="rendered")

    async def cancel(self, remote_ref: str) -> CancelResult:
        return CancelResult(False, "TinyFoley cannot stop a render", can_stop=False)

    async def lookup(self, remote_ref: str, job: JobRequest) -> AsyncIterator[JobStatus]:
        yield JobStatus(StatusCode.FAILED, message="TinyFoley forgets finished renders")

    async def close(self) -> None:
        return None


def _adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> TinyFoleyBackend:
    return TinyFoleyBackend(record, session)


SPEC = BackendSpec(kind=KIND, title="TinyFoley", fingerprints=(Fingerprint(5, _fingerprint),), health_check=_health,
                   tasks={"sound_effects": 0}, adapter=_adapter)


@pytest.fixture
def tiny_kind() -> Iterator[BackendSpec]:
    unregister = registry.register(SPEC)
    try:
        yield SPEC
    finally:
        unregister()


@pytest.fixture
async def tiny_server() -> AsyncIterator[tuple[str, list[str]]]:
    rendered: list[str] = []

    async def about(_: web.Request) -> web.Response:
        return web.json_response({"name": "TinyFoley", "version": "0.3"})

    async def queue(_: web.Request) -> web.Response:
        return web.json_response({"waiting": 0})

    async def render(req: web.Request) -> web.Response:
        prompt = (await req.json())["prompt"]
        rendered.append(prompt)
        return web.Response(body=json.dumps({"foley": prompt}).encode())

    app = web.Application()
    app.router.add_get("/tiny/about", about)
    app.router.add_get("/tiny/queue", queue)
    app.router.add_post("/tiny/render", render)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", rendered
    finally:
        await runner.cleanup()


async def test_an_extra_kind_is_discovered_checked_and_routed(tiny_kind: BackendSpec,
                                                               tiny_server: tuple[str, list[str]]) -> None:
    url, rendered = tiny_server
    settings = load_settings(cli={"urls": [url], "scan_default_ports": False, "health_interval": 0.3,
                                  "discovery_budget": 1.0})
    assert settings.task_backends["sound_effects"][0] in ("audioldm", "tinyfoley")
    assert "tinyfoley" in settings.task_backends["sound_effects"]
    center = ControlCenter(settings)
    health = EventWaiter(center.bus, HealthSampled)
    jobs = EventWaiter(center.bus, JobUpdated)
    try:
        await center.start()
        sid = f"tinyfoley@{url.removeprefix('http://')}"
        assert center.services[sid].kind == "tinyfoley" and center.services[sid].version == "0.3"
        sampled = await health.wait(lambda e: e.sample.service_id == sid and e.state is ServiceState.UP, 10)
        assert sampled.sample.queue_depth == 0
        assert (await center.jobs.route_explain("sound_effects")).chosen == sid
        job = await center.jobs.submit("sound_effects", "door creak")
        done = await center.jobs.wait(job.id, 10)
        assert done.state is JobState.SUCCEEDED and done.routed_to == sid, done.status
        assert rendered == ["door creak"]
        assert json.loads(Path(done.outputs[0].path).read_bytes()) == {"foley": "door creak"}
        assert any(e.job.state is JobState.RUNNING and e.job.routed_to == sid for e in jobs.events)
    finally:
        health.close()
        jobs.close()
        await center.stop()


def test_a_registered_kind_is_a_valid_config_key(tiny_kind: BackendSpec) -> None:
    settings = load_settings(cli={"ports": {"tinyfoley": [9999]}, "job_concurrency": {"tinyfoley": 3}})
    assert settings.ports["tinyfoley"] == [9999] and settings.job_concurrency["tinyfoley"] == 3
    assert registry.default_ports().get("tinyfoley") is None


def test_a_kind_name_is_registered_once(tiny_kind: BackendSpec) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(SPEC)
