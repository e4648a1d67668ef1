"""JobManager against stand-in processes: run, fail over, watchdog, cancel, storage errors."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import JobUpdated
from backlot.services.jobs.manager import JobError
from backlot.services.jobs.store import StoreError
from backlot.services.models import JobState
from backlot.standins.video import write_wav
from tests.helpers import EventWaiter


def settings_for(*urls: str, **extra: Any) -> Any:
    return load_settings(cli={"urls": list(urls), "scan_default_ports": False, "discovery_budget": 1.0,
                              "health_interval": 0.3, "reconnect_backoff_base": 0.05, "reconnect_backoff_max": 0.3,
                              "breaker_threshold": 2, "health_timeout": 1.0, **extra})


@pytest.fixture
async def center_factory() -> AsyncIterator[Any]:
    made: list[ControlCenter] = []

    async def make(*urls: str, **extra: Any) -> ControlCenter:
        c = ControlCenter(settings_for(*urls, **extra))
        await c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.stop()


async def running_on(center: ControlCenter, job_id: str, timeout: float = 30) -> str:
    """Wait until the job reports progress on a backend; returns that backend's id."""
    waiter = EventWaiter(center.bus, JobUpdated)
    try:
        ev = await waiter.wait(lambda e: e.job.id == job_id and e.job.status.step is not None, timeout)
        return str(ev.job.routed_to)
    finally:
        waiter.close()


async def test_job_runs_to_a_real_png_and_is_stored(standin: Any, center_factory: Any) -> None:
    sp = standin("comfyui", speed=5)
    c = await center_factory(sp.url)
    job = await c.jobs.submit("text_to_image", "a lighthouse at dusk", {"width": 128, "height": 96, "steps": 4})
    done = await c.jobs.wait(job.id, 60)
    assert done.state is JobState.SUCCEEDED, done.status
    assert done.routed_to == f"comfyui@127.0.0.1:{sp.port}" and len(done.attempts) == 1
    assert "queue" in done.route.explain()
    (out,) = done.outputs
    assert out.path.is_absolute() and out.path.is_file() and out.mime == "image/png"
    assert out.path.parent == c.settings.output_path / job.id
    stored = await c.store.get(job.id)
    assert stored is not None and stored.state is JobState.SUCCEEDED and stored.outputs == done.outputs
    assert (await c.store.get(str(job.seq))).id == job.id  # type: ignore[union-attr]
    assert [j.id for j in await c.jobs.list(state="succeeded")] == [job.id]


async def test_killed_backend_fails_over_to_the_other_instance(standin: Any, center_factory: Any) -> None:
    a, b = standin("comfyui"), standin("comfyui")
    c = await center_factory(a.url, b.url)
    job = await c.jobs.submit("text_to_image", "storm", {"workflow": "standin_progress", "seconds": 3})
    first = await running_on(c, job.id)
    victim, survivor = (a, b) if first.endswith(f":{a.port}") else (b, a)
    victim.kill()
    done = await c.jobs.wait(job.id, 60)
    assert done.state is JobState.SUCCEEDED, done.status
    assert [x.backend for x in done.attempts] == [first, f"comfyui@127.0.0.1:{survivor.port}"]
    assert done.attempts[0].outcome.startswith("failed") and done.outputs


async def test_killed_backend_with_no_other_fails_clearly(standin: Any, center_factory: Any) -> None:
    sp = standin("comfyui")
    c = await center_factory(sp.url)
    job = await c.jobs.submit("text_to_image", "storm", {"workflow": "standin_progress", "seconds": 5})
    await running_on(c, job.id)
    sp.kill()
    done = await c.jobs.wait(job.id, 60)
    assert done.state is JobState.FAILED
    assert done.error is not None and "no other backend can take it" in done.status.message
    assert "lost contact" in done.error.message or "refused" in done.error.message


async def test_watchdog_interrupts_a_stalled_backend(standin: Any, center_factory: Any) -> None:
    sp = standin("comfyui")
    c = await center_factory(sp.url, watchdog_seconds=1.0, max_attempts=1)
    job = await c.jobs.submit("text_to_image", "x", {"workflow": "standin_progress", "seconds": 30})
    await running_on(c, job.id)
    os.kill(sp.pid, signal.SIGSTOP)  # the process is alive but says nothing
    try:
        done = await c.jobs.wait(job.id, 60)
    finally:
        os.kill(sp.pid, signal.SIGCONT)
    assert done.state is JobState.FAILED and done.error is not None and done.error.code == "timeout"
    assert "no progress from" in done.status.message


async def test_cancel_queued_and_running(standin: Any, center_factory: Any) -> None:
    sp = standin("comfyui")
    c = await center_factory(sp.url, job_concurrency={"comfyui": 1})
    first = await c.jobs.submit("text_to_image", "one", {"workflow": "standin_progress", "seconds": 30})
    second = await c.jobs.submit("text_to_image", "two", {"workflow": "standin_progress", "seconds": 30})
    await running_on(c, first.id)
    assert (await c.jobs.get(second.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    cancelled = await c.jobs.cancel(second.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.status.message == "cancelled before it started"
    waiter = EventWaiter(c.bus, JobUpdated)
    await c.jobs.cancel(first.id)
    done = await c.jobs.wait(first.id, 30)
    assert done.state is JobState.CANCELLED and "interrupted" in done.status.message
    assert any(e.job.id == first.id and e.job.status.message == "cancelling" for e in waiter.events)
    waiter.close()
    with pytest.raises(JobError) as err:
        await c.jobs.cancel("nope")
    assert err.value.code == "unknown_job"


async def test_bad_requests_are_refused_and_nothing_is_written(standin: Any, center_factory: Any, tmp_path: Path) -> None:
    sp = standin("comfyui")
    c = await center_factory(sp.url)
    with pytest.raises(JobError, match="unknown task 'paint'"):
        await c.jobs.submit("paint", "x")
    with pytest.raises(JobError, match="does not exist"):
        await c.jobs.submit("upscale", "x", inputs=[str(tmp_path / "missing.png")])
    with pytest.raises(JobError, match="needs an input audio"):  # what the job says is checked before the route
        await c.jobs.submit("voice_conversion", "x")
    line = tmp_path / "line.wav"
    write_wav(line, 0.5, "a line", 0)
    with pytest.raises(JobError) as err:
        await c.jobs.submit("voice_conversion", "x", inputs=[str(line)])
    assert err.value.code == "no_backend" and "voice_conversion" in str(err.value)
    assert await c.jobs.list() == []


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


async def test_read_only_data_dir_is_a_clear_error(standin: Any, tmp_path: Path) -> None:
    data = tmp_path / "ro-data"
    if os.geteuid() == 0:
        if not _mount_tmpfs(data, "ro,size=1m"):
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        data.mkdir()
        data.chmod(0o555)
    try:
        c = ControlCenter(settings_for(standin("comfyui").url, data_dir=str(data)))
        with pytest.raises(StoreError, match="read-only|cannot open|cannot create"):
            await c.start()
        await c.stop()
    finally:
        if os.geteuid() == 0:
            _umount(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a small tmpfs (root)")
async def test_full_disk_at_submit_is_a_clear_error_and_nothing_half_written(standin: Any, tmp_path: Path) -> None:
    data = tmp_path / "small"
    if not _mount_tmpfs(data, "size=512k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        sp = standin("comfyui")
        c = ControlCenter(settings_for(sp.url, data_dir=str(data)))
        await c.start()
        try:
            big = tmp_path / "big.png"
            # a real picture (inputs are sniffed), of noise so it stays larger than what is left on the data disk
            Image.frombytes("RGB", (480, 500), os.urandom(480 * 500 * 3)).save(big)
            with pytest.raises(JobError) as err:
                await c.jobs.submit("upscale", "x", inputs=[str(big)])
            assert err.value.code == "storage" and "No space left" in str(err.value)
            assert await c.jobs.list() == []
            assert list((data / "outputs").iterdir()) == [] if (data / "outputs").exists() else True
        finally:
            await c.stop()
    finally:
        _umount(data)
