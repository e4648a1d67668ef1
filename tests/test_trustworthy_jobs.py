"""A job never hangs and its record never lies: misbehaving servers, adapters that raise, routes kept, failover."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backlot.services.backends.base import FailureCode, JobRequest, StatusCode
from backlot.services.backends.comfyui.adapter import ComfyUIBackend
from backlot.services.config import load_settings
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.control import ControlCenter
from backlot.services.events import JobUpdated
from backlot.services.jobs.store import JobStore
from backlot.services.models import JobState, ServiceRecord
from tests.helpers import serve

STATS = {"system": {"comfyui_version": "0.8.0"}, "devices": [{"name": "cpu", "type": "cpu"}]}


def settings_for(*urls: str, **extra: Any) -> Any:
    return load_settings(cli={"urls": list(urls), "scan_default_ports": False, "discovery_budget": 1.0,
                              "health_interval": 0.3, "health_timeout": 1.0, **extra})


def fake_comfyui(history: Any, ws_frames: list[Any] | None = None) -> dict[str, Any]:
    """Routes of a ComfyUI that accepts a prompt and then answers ``history`` (and ``ws_frames`` on its socket)."""

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(STATS)

    async def prompt(req: web.Request) -> web.Response:
        if req.method == "POST":
            return web.json_response({"prompt_id": "p1", "number": 1, "node_errors": {}})
        return web.json_response({"exec_info": {"queue_remaining": 0}})

    async def hist(_: web.Request) -> web.Response:
        return web.json_response(history)

    async def queue(_: web.Request) -> web.Response:
        return web.json_response({"queue_running": [[0, "p1"]], "queue_pending": []})

    async def ws(req: web.Request) -> web.StreamResponse:
        if ws_frames is None:
            return web.Response(status=404)
        sock = web.WebSocketResponse()
        await sock.prepare(req)
        for frame in ws_frames:
            if isinstance(frame, bytes):
                await sock.send_bytes(frame)
            else:
                await sock.send_str(frame if isinstance(frame, str) else json.dumps(frame))
        await sock.receive()  # hold it open until the client goes
        return sock

    async def object_info(_: web.Request) -> web.Response:
        return web.json_response({})

    return {"/system_stats": stats, "/prompt": prompt, "/history/{pid}": hist, "/queue": queue, "/ws": ws,
            "/object_info/{cls}": object_info}


async def run_one(url: str, task: str = "text_to_image", params: dict[str, Any] | None = None) -> Any:
    center = ControlCenter(settings_for(url, max_attempts=1))
    await center.start()
    try:
        job = await center.jobs.submit(task, "a quiet harbour", params or {"workflow": "standin_image"})
        done = await center.jobs.wait(job.id, 20)
        stored = await center.store.get(job.id)
        return done, stored
    finally:
        await center.stop()


@pytest.mark.parametrize("history", [{"p1": "x"}, ["not", "an", "object"], {"p1": {"status": 7, "outputs": 3}}])
async def test_garbage_history_ends_the_job_instead_of_hanging(history: Any) -> None:
    async with serve(fake_comfyui(history)) as url:
        done, stored = await run_one(url)
    assert done.state is JobState.FAILED and stored.state is JobState.FAILED
    assert done.attempts[-1].outcome.startswith("failed: bad_response"), done.attempts


async def test_a_websocket_sending_junk_ends_the_job() -> None:
    frames: list[Any] = ["not json at all", b"\x00\x01", {"type": "execution_start", "data": {"prompt_id": "p1"}},
                         {"type": "progress", "data": {"prompt_id": "p1", "value": "lots", "max": 3}}]
    async with serve(fake_comfyui({}, frames)) as url:
        done, stored = await run_one(url)
    assert done.state is JobState.FAILED and stored.state is JobState.FAILED
    assert "lots" in done.status.message or "could not" in done.status.message, done.status


async def test_an_output_that_cannot_be_written_fails_naming_the_path(standin: Any, tmp_path: Path) -> None:
    sp = standin("comfyui", speed=10)
    blocker = tmp_path / "outputs-is-a-file"
    blocker.write_text("not a folder")
    pool = ConnectionPool()
    backend = ComfyUIBackend(ServiceRecord("comfyui", "127.0.0.1", sp.port, sp.url, "comfyui"),
                             lambda: pool.session("c"))
    try:
        statuses = [s async for s in backend.submit(JobRequest("j1", "text_to_image", "x", {"workflow": "standin_image"},
                                                               output_dir=blocker / "job"))]
    finally:
        await pool.close()
    last = statuses[-1]
    assert last.code is StatusCode.FAILED and last.failure is FailureCode.STORAGE
    assert str(blocker) in last.message and "could not be saved" in last.message, last.message


class Exploding:
    """An adapter whose stream raises something no adapter should let out."""

    def __init__(self, record: ServiceRecord) -> None:
        self.record = record
        self.kind = record.kind

    async def submit(self, job: JobRequest) -> AsyncIterator[Any]:
        raise RuntimeError("adapter bug")
        yield  # pragma: no cover  (makes this an async generator)

    async def close(self) -> None:
        return None


async def test_an_adapter_that_raises_ends_the_attempt_and_the_record_says_why(standin: Any) -> None:
    sp = standin("comfyui", speed=10)
    center = ControlCenter(settings_for(sp.url, max_attempts=1))
    await center.start()
    try:
        sid = f"comfyui@127.0.0.1:{sp.port}"
        center._adapters[sid] = Exploding(center.services[sid])  # type: ignore[assignment]
        job = await center.jobs.submit("text_to_image", "x", {"workflow": "standin_image"})
        done = await center.jobs.wait(job.id, 10)
        stored = await center.store.get(job.id)
    finally:
        await center.stop()
    assert done.state is JobState.FAILED and stored.state is JobState.FAILED
    assert "RuntimeError: adapter bug" in done.attempts[-1].message


async def test_what_waiters_see_is_what_the_store_holds_even_when_stopped_at_once(standin: Any) -> None:
    """The new user's upscale without an input: printed "failed", stored "running". Never again.

    That upscale is now refused before a job exists (tests/test_tasks.py); a job the backend fails at once
    (a ComfyUI without the checkpoint, whose model list Backlot has not read) stands in for it.
    """
    sp = standin("comfyui", "--checkpoints", "", speed=10)
    for _ in range(3):
        center = ControlCenter(settings_for(sp.url))
        seen: list[Any] = []
        center.bus.subscribe(lambda e: seen.append(e.job), JobUpdated)
        await center.start()
        center.inventory._known.pop(f"comfyui@127.0.0.1:{sp.port}")  # else it is refused before it is a job
        job = await center.jobs.submit("text_to_image", "x", {"width": 64, "height": 64, "steps": 2})
        done = await center.jobs.wait(job.id, 10)
        await center.stop()  # at once, as the CLI did
        store = JobStore(center.store.path)
        await store.open()
        try:
            stored = await store.get(job.id)
        finally:
            await store.close()
        assert done.state is JobState.FAILED and stored is not None and stored.state is JobState.FAILED
        assert seen[-1].state is JobState.FAILED and "not available on this server" in seen[-1].status.message


async def test_the_route_shown_at_acceptance_is_the_route_it_runs_on(standin: Any) -> None:
    a, b = standin("comfyui", speed=10), standin("comfyui", speed=10)
    center = ControlCenter(settings_for(a.url, b.url))
    await center.start()
    try:
        for i in range(4):
            job = await center.jobs.submit("text_to_image", f"shot {i}", {"workflow": "standin_image"})
            shown = job.route.chosen
            done = await center.jobs.wait(job.id, 20)
            assert done.state is JobState.SUCCEEDED and done.status.code == "succeeded"  # one vocabulary
            assert done.routed_to == shown or done.route.note.startswith(f"re-routed from {shown}")
    finally:
        await center.stop()


async def test_a_server_lacking_the_checkpoint_fails_over_to_one_that_has_it(standin: Any) -> None:
    empty, full = standin("comfyui", "--checkpoints", "", speed=10), standin("comfyui", speed=10)
    center = ControlCenter(settings_for(empty.url, full.url, job_concurrency={"comfyui": 1}))
    await center.start()
    # What the empty server has is not known (not read yet, or read before its files went): the router cannot
    # know it lacks the checkpoint, so the capability failure and the failover are what must get the job done.
    center.inventory._known.pop(f"comfyui@127.0.0.1:{empty.port}")
    try:
        jobs = [await center.jobs.submit("text_to_image", f"shot {i}", {"width": 64, "height": 64, "steps": 2})
                for i in range(2)]
        done = [await center.jobs.wait(j.id, 60) for j in jobs]
    finally:
        await center.stop()
    full_id = f"comfyui@127.0.0.1:{full.port}"
    assert all(d.state is JobState.SUCCEEDED and d.routed_to == full_id for d in done), [d.status for d in done]
    moved = [d for d in done if len(d.attempts) == 2]
    assert len(moved) == 1, [d.attempts for d in done]
    first = moved[0].attempts[0]
    assert first.outcome == "failed: capability" and "not available on this server" in first.message
    assert moved[0].attempts[1].outcome == "succeeded"


def test_no_cli_process_runs_jobs_or_recovery_itself(standin: Any, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The lock's holder owns the jobs: a CLI beside a holder that serves no API runs nothing and touches no row."""
    import main
    from backlot.services.instance import InstanceLock
    from backlot.services.models import Job

    sp = standin("comfyui", speed=10)
    monkeypatch.setenv("BACKLOT_URLS", sp.url)
    monkeypatch.setenv("BACKLOT_SCAN_DEFAULT_PORTS", "false")
    settings = settings_for(sp.url)

    async def put_stale() -> None:
        store = JobStore(settings.data_path / "jobs.sqlite3")
        await store.open()
        await store.insert(Job(id="stale1", task="text_to_image", prompt="x", state=JobState.RUNNING,
                               routed_to=f"comfyui@127.0.0.1:{sp.port}", remote_ref="gone"))
        await store.close()

    async def read(job_id: str) -> Any:
        store = JobStore(settings.data_path / "jobs.sqlite3")
        await store.open()
        try:
            return await store.get(job_id)
        finally:
            await store.close()

    asyncio.run(put_stale())
    lock = InstanceLock(settings.data_path)
    lock.acquire()
    try:
        code = main.main(["submit", "--task", "text_to_image", "--prompt", "p", "--param", "workflow=standin_image"])
    finally:
        lock.release()
    assert code == 4 and "could not start" in capsys.readouterr().err
    assert asyncio.run(read("stale1")).state is JobState.RUNNING


async def test_a_job_runs_the_workflow_file_it_was_accepted_with(standin: Any, tmp_path: Path) -> None:
    """The workflow file is read once, at acceptance: an edit before the job runs, or its removal before a retry,
    changes nothing (the job and its retry run the snapshot)."""
    from tests.helpers import EventWaiter
    from tests.test_inventory import history

    templates = Path(__file__).resolve().parent.parent / "resources" / "workflows"
    graph = json.loads((templates / "standin_image.json").read_text(encoding="utf-8"))
    mine, side = tmp_path / "mine.json", tmp_path / "mine.bindings.json"
    mine.write_text(json.dumps(graph), encoding="utf-8")
    side.write_text((templates / "standin_image.bindings.json").read_text(encoding="utf-8"), encoding="utf-8")
    sp = standin("comfyui", speed=10)
    center = ControlCenter(settings_for(sp.url, job_concurrency={"comfyui": 1}))
    await center.start()
    waiter = EventWaiter(center.bus, JobUpdated)
    try:
        blocker = await center.jobs.submit("text_to_image", "hold", {"workflow": "standin_progress", "seconds": 60})
        await waiter.wait(lambda e: e.job.id == blocker.id and e.job.state is JobState.RUNNING)
        job = await center.jobs.submit("text_to_image", "x", {"workflow": str(mine), "width": 32, "height": 32})
        await waiter.wait(lambda e: e.job.id == job.id and "busy with earlier jobs" in e.job.status.message)
        edited = json.loads(json.dumps(graph))
        edited["2"]["inputs"]["blur_radius"] = 9  # the user changes the file while the job waits its turn
        mine.write_text(json.dumps(edited), encoding="utf-8")
        await center.jobs.cancel(blocker.id)
        done = await center.jobs.wait(job.id, 30)
        assert done.state is JobState.SUCCEEDED, done.status
        sent = (await history(sp))[done.remote_ref]["prompt"][2]
        assert sent["2"]["inputs"]["blur_radius"] == 3 and sent["1"]["inputs"]["width"] == 32  # the accepted graph
        mine.unlink()  # and then removes it: a retry runs what the job was accepted with
        side.unlink()
        again = await center.jobs.submit(done.task, done.prompt, done.params, done.inputs, done.requested_backend)
        retried = await center.jobs.wait(again.id, 30)
        assert retried.state is JobState.SUCCEEDED, retried.status
        sent = (await history(sp))[retried.remote_ref]["prompt"][2]
        assert sent["2"]["inputs"]["blur_radius"] == 3 and sent["1"]["inputs"]["width"] == 32
        assert retried.params["workflow"] == done.params["workflow"] != str(mine)
    finally:
        await center.stop()
