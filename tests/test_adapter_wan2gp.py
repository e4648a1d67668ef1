"""The Wan2GP adapter end to end against the MCP stand-in process (and a dead port and a black hole)."""
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from backlot.services.backends.base import Backend, FailureCode, JobRequest, JobStatus, StatusCode
from backlot.services.backends.wan2gp.adapter import Wan2gpBackend
from backlot.services.backends.wan2gp.settings import InvalidParams, build_settings, pick_model
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.models import ServiceKind, ServiceRecord
from tests.helpers import BlackHoles, serve

MakeBackend = Callable[..., Wan2gpBackend]


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    p = ConnectionPool()
    yield p
    await p.close()


@pytest.fixture
async def make(pool: ConnectionPool) -> AsyncIterator[MakeBackend]:
    """Adapters for a base URL (fast polling); all are closed afterwards."""
    made: list[Wan2gpBackend] = []

    def _make(url: str, **kw: Any) -> Wan2gpBackend:
        host, port = url.rsplit("/", 1)[-1].split(":")
        rec = ServiceRecord(ServiceKind("wan2gp"), host, int(port), url, "mcp")
        b = Wan2gpBackend(rec, lambda: pool.session(rec.id), **{"poll_interval": 0.05, **kw})
        made.append(b)
        return b

    yield _make
    for b in made:
        await b.close()


async def collect(it: AsyncIterator[JobStatus]) -> list[JobStatus]:
    return [s async for s in it]


def job(tmp_path: Path, task: str = "text_to_video", prompt: str = "a fox in the snow", **params: Any) -> JobRequest:
    inputs = params.pop("inputs", [])
    return JobRequest("job1", task, prompt, params, inputs, tmp_path / "out")


def video_facts(path: Path) -> tuple[int, int, int]:
    """(frames, width, height), counting decoded frames."""
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
        return frames, c.streams.video[0].width, c.streams.video[0].height


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_text_to_video_gives_the_requested_mp4_with_rising_progress(standin: Any, make: MakeBackend,
                                                                          tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=1)  # ~25 ms a step at this size: several polls see the denoising
    b = make(sp.url)
    assert isinstance(b, Backend) and b.capabilities == ("text_to_video", "image_to_video", "quick_preview")
    statuses = await collect(b.submit(job(tmp_path, width=320, height=192, frames=17, steps=30, seed=7)))
    first, last = statuses[0], statuses[-1]
    assert first.code is StatusCode.QUEUED and first.remote_ref and first.detail["model_type"] == "t2v_1.3B"
    assert first.detail["settings"] == {"prompt": "a fox in the snow", "resolution": "320x192", "video_length": 17,
                                        "num_inference_steps": 30, "seed": 7, "model_type": "t2v_1.3B"}
    assert last.code is StatusCode.SUCCEEDED, last
    fractions = [s.fraction for s in statuses if s.code is StatusCode.PROGRESS]
    assert fractions == sorted(fractions) and any(0 < f < 1 for f in fractions if f is not None), fractions
    steps = [(s.step, s.total) for s in statuses if s.unit == "steps"]
    assert steps[-1] == (30, 30) and len(steps) >= 2
    assert [n for n, _ in steps] == sorted(set(n for n, _ in steps))  # overlapping polls: each step reported once
    assert all(s.remote_ref == first.remote_ref for s in statuses[1:-1])
    (out,) = last.outputs
    assert out.mime == "video/mp4" and out.path.parent == tmp_path / "out" and out.bytes == out.path.stat().st_size
    assert out.path.name.endswith("_seed7_a-fox-in-the-snow.mp4")  # Wan2GP's own file name is kept
    assert video_facts(out.path) == (17, 320, 192)
    assert not list((tmp_path / "out").glob("*.part"))


async def test_model_auto_pick_explicit_default_and_image_upload(standin: Any, make: MakeBackend,
                                                                 tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=20)
    b = make(sp.url)
    preview = await collect(b.submit(job(tmp_path / "p", task="quick_preview")))
    assert preview[0].detail["model_type"] == "t2v_1.3B" and preview[-1].code is StatusCode.SUCCEEDED, preview[-1]
    assert video_facts(preview[-1].outputs[0].path) == (17, 480, 272)  # the small preview defaults

    explicit = await collect(b.submit(job(tmp_path / "e", model_type="t2v", width=64, height=48, frames=5, steps=2)))
    assert explicit[0].detail["model_type"] == "t2v" and explicit[-1].code is StatusCode.SUCCEEDED, explicit[-1]
    configured = make(sp.url, default_model="t2v")
    chosen = await collect(configured.submit(job(tmp_path / "d", width=64, height=48, frames=5, steps=2)))
    assert chosen[0].detail["model_type"] == "t2v" and chosen[-1].code is StatusCode.SUCCEEDED

    still = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(still)
    i2v = await collect(b.submit(job(tmp_path / "i", task="image_to_video", inputs=[still], width=64, height=48,
                                     frames=5, steps=2)))
    settings = i2v[0].detail["settings"]
    assert settings["model_type"] == "i2v" and settings["image_prompt_type"] == "S"
    assert settings["image_start"].startswith("visual:")  # the gallery id the upload got
    assert i2v[-1].code is StatusCode.SUCCEEDED and video_facts(i2v[-1].outputs[0].path) == (5, 64, 48)
    models = (await b.probe())["models"]
    assert {"model_type": "i2v", "name": "Wan2.1 Image2video 480p 14B", "main_output": "video"} in models
    assert {m["main_output"] for m in models} == {"video", "image", "audio"}


async def test_cancel_mid_run_ends_cancelled(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=10)
    b = make(sp.url)
    run = b.submit(job(tmp_path, width=1280, height=720, frames=81, steps=200))  # ~25 s if left alone
    first = await run.__anext__()
    async for st in run:
        if st.unit == "steps":
            break
    started = time.monotonic()
    result = await b.cancel(first.remote_ref)  # type: ignore[arg-type]
    assert not result.confirmed and result.message == "cancel requested; waiting for Wan2GP to stop"
    rest = await collect(run)
    assert rest[-1].code is StatusCode.CANCELLED and rest[-1].message == "cancelled in Wan2GP"
    assert time.monotonic() - started < 5 and not rest[-1].outputs


async def test_a_second_job_waits_queued_then_completes(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=1)
    b = make(sp.url)
    first = b.submit(job(tmp_path / "1", width=320, height=192, frames=17, steps=60))  # ~1.5 s of denoising
    await first.__anext__()
    async for st in first:
        if st.unit == "steps" and st.step is not None and st.step < 20:
            break  # the first job is running now
    second = b.submit(job(tmp_path / "2", width=64, height=48, frames=5, steps=2))
    third = b.submit(job(tmp_path / "3", width=64, height=48, frames=5, steps=2))
    waiting = await second.__anext__()
    queued_third = await third.__anext__()
    assert waiting.code is StatusCode.QUEUED and queued_third.code is StatusCode.QUEUED
    dropped = await b.cancel(queued_third.remote_ref)  # type: ignore[arg-type]
    assert dropped.confirmed  # a queued job ends at once: nothing to wait for
    assert [s.code for s in await collect(third)] == [StatusCode.CANCELLED]

    seen: list[tuple[str, JobStatus]] = []

    async def follow(name: str, it: AsyncIterator[JobStatus]) -> None:
        async for st in it:
            seen.append((name, st))

    await asyncio.gather(follow("first", first), follow("second", second))
    mid_run = [i for i, (name, st) in enumerate(seen) if name == "first" and st.unit == "steps"
               and st.step is not None and st.step <= 45]
    later = [i for i, (name, _) in enumerate(seen) if name == "second"]
    # while the first job was mid-run, the second reported nothing beyond its QUEUED (it has no events yet)
    assert mid_run and later and max(mid_run) < min(later), [(n, s.code.value, s.step) for n, s in seen]
    assert [s for n, s in seen if n == "first"][-1].code is StatusCode.SUCCEEDED
    assert [s for n, s in seen if n == "second"][-1].code is StatusCode.SUCCEEDED


async def test_server_messages_for_missing_and_unknown_models(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=20)
    b = make(sp.url)
    blank = await collect(b.submit(job(tmp_path, model_type="")))
    assert blank[-1].failure is FailureCode.VALIDATION and blank[0].code is StatusCode.QUEUED
    assert blank[-1].message.startswith("model_type is required")
    # an unknown model is refused up front (Wan2GP itself would accept the job and fail it at runtime)
    (unknown,) = await collect(b.submit(job(tmp_path, model_type="no_such_model")))
    assert unknown.code is StatusCode.FAILED and unknown.failure is FailureCode.CAPABILITY and not unknown.remote_ref
    assert unknown.message.startswith(f"{b.record.id} has no model named 'no_such_model'"), unknown.message
    # refused before anything is sent
    (odd,) = await collect(b.submit(job(tmp_path, width=320)))
    assert odd.failure is FailureCode.VALIDATION and "both width and height" in odd.message
    (no_image,) = await collect(b.submit(job(tmp_path, task="image_to_video")))
    assert no_image.failure is FailureCode.VALIDATION and "needs an input image" in no_image.message


async def test_lookup_reattaches_running_and_finished_jobs(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=2)
    old = make(sp.url)
    run = old.submit(job(tmp_path, width=320, height=192, frames=9, steps=40))
    ref = (await run.__anext__()).remote_ref
    async for st in run:
        if st.unit == "steps":
            break
    await run.aclose()  # Backlot stops while the job runs
    fresh = make(sp.url)
    statuses = await collect(fresh.lookup(ref, job(tmp_path / "back")))  # type: ignore[arg-type]
    assert statuses[0].code is StatusCode.PROGRESS and statuses[0].message == "re-attached after restart"
    assert statuses[-1].code is StatusCode.SUCCEEDED and video_facts(statuses[-1].outputs[0].path) == (9, 320, 192)
    assert statuses[-1].outputs[0].path.parent == tmp_path / "back" / "out"

    again = await collect(make(sp.url).lookup(ref, job(tmp_path / "again")))  # type: ignore[arg-type]
    assert [s.code for s in again] == [StatusCode.SUCCEEDED]  # a finished job: straight to its (re-fetched) files
    assert again[0].outputs[0].path.parent == tmp_path / "again" / "out"


async def test_unknown_job_id(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=20)
    b = make(sp.url)
    (st,) = await collect(b.lookup("not-a-job", job(tmp_path)))
    assert st.code is StatusCode.FAILED and st.failure is FailureCode.UNKNOWN_REMOTE
    assert "no longer knows this job" in st.message
    result = await b.cancel("not-a-job")
    assert not result.confirmed and result.message == "Wan2GP no longer knows this job"


async def test_dead_server_is_unreachable_quickly(make: MakeBackend, tmp_path: Path) -> None:
    b = make(f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    (st,) = await collect(b.submit(job(tmp_path, model_type="t2v_1.3B")))
    assert st.failure is FailureCode.UNREACHABLE and "connection refused" in st.message
    (st,) = await collect(b.lookup("abc", job(tmp_path)))
    assert st.failure is FailureCode.UNREACHABLE
    with pytest.raises(ServiceError) as info:
        await b.probe()
    assert info.value.error_class is ErrorClass.REFUSED
    assert not (await b.cancel("abc")).confirmed
    assert time.monotonic() - started < 3


async def test_hanging_server_times_out_without_hanging(make: MakeBackend, tmp_path: Path) -> None:
    holes = BlackHoles(1)  # accepts connections (the kernel's backlog) but never answers
    try:
        b = make(f"http://127.0.0.1:{holes.ports[0]}", call_timeout=0.5)
        started = time.monotonic()
        (st,) = await asyncio.wait_for(collect(b.submit(job(tmp_path))), 10)
        assert st.failure is FailureCode.TIMEOUT and "within 0.5 s" in st.message
        assert time.monotonic() - started < 2
        (st,) = await asyncio.wait_for(collect(b.lookup("abc", job(tmp_path))), 10)
        assert st.failure is FailureCode.TIMEOUT
        result = await asyncio.wait_for(b.cancel("abc"), 10)
        assert not result.confirmed and "could not reach Wan2GP" in result.message
    finally:
        holes.close()


async def test_a_web_server_without_mcp_is_a_bad_response(make: MakeBackend, tmp_path: Path) -> None:
    async with serve({}) as url:  # answers 404 everywhere, like Wan2GP's web UI started without --mcp
        (st,) = await asyncio.wait_for(collect(make(url).submit(job(tmp_path))), 10)
    assert st.failure is FailureCode.BAD_RESPONSE and "no MCP server at /mcp/" in st.message


async def test_server_forgetting_or_dying_mid_job(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=10)
    b = make(sp.url, unreachable_grace=30.0)
    long = {"width": 1280, "height": 720, "frames": 81, "steps": 200}  # ~25 s if left alone
    run = b.submit(job(tmp_path, **long))
    await run.__anext__()
    async for st in run:
        if st.unit == "steps":
            break
    await asyncio.to_thread(sp.stop)
    again = await asyncio.to_thread(standin, "wan2gp", port=sp.port, speed=10)  # same port, no memory of the job
    rest = await asyncio.wait_for(collect(run), 30)
    assert rest[-1].failure is FailureCode.UNKNOWN_REMOTE, rest[-1]

    quick = make(again.url, unreachable_grace=0.3)
    run = quick.submit(job(tmp_path, **long))
    await run.__anext__()
    await asyncio.to_thread(again.stop)  # and now it dies for good
    (st,) = [s async for s in run if s.code is StatusCode.FAILED]
    assert st.failure is FailureCode.UNREACHABLE and st.message.startswith("lost contact with wan2gp@"), st


def test_settings_from_job_params() -> None:
    assert build_settings("text_to_video", "p", {"seconds": "2.5s", "fps": 8, "guidance_scale": 4,
                                                 "negative_prompt": "blur", "resolution": "832 x 480",
                                                 "settings": {"flow_shift": 3, "seed": 5}}) == {
        "prompt": "p", "negative_prompt": "blur", "resolution": "832x480", "video_length": "2.5s", "seed": 5,
        "guidance_scale": 4.0, "force_fps": 8.0, "flow_shift": 3}
    preview = build_settings("quick_preview", "p", {"frames": 9})
    assert preview["resolution"] == "480x272" and preview["video_length"] == 9 and preview["seed"] == -1
    for bad, words in (({"frames": 2.5}, "frames must be a whole number"), ({"steps": 0}, "at least 1"),
                       ({"resolution": "big"}, "832x480"), ({"seconds": "soon"}, "seconds"),
                       ({"settings": [1]}, "settings must be an object")):
        with pytest.raises(InvalidParams, match=words):
            build_settings("text_to_video", "p", bad)


def test_model_choice_per_task() -> None:
    def rec(model_type: str, output: str, start_image: bool = False, available: bool | None = None) -> dict[str, Any]:
        r: dict[str, Any] = {"model_type": model_type, "main_output": [output], "inputs": ["text"],
                             "media_inputs": {"image": {"start": start_image}}}
        if available is not None:
            r["availability"] = {"available": available}
        return r

    records = [rec("flux", "image"), rec("i2v", "video", True), rec("big", "video", available=False),
               rec("small", "video", available=True)]
    assert pick_model(records, "text_to_video") == "small"  # installed beats listed first
    assert pick_model(records, "image_to_video") == "i2v"
    assert pick_model(records[:2], "quick_preview") is None
    assert pick_model([{"model_type": "x", "outputs": ["video"], "inputs": ["text", "image"]}], "image_to_video") == "x"
