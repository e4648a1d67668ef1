"""The ComfyUI adapter end to end against the stand-in process (and a few misbehaving servers)."""
from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web
from PIL import Image

from backlot.services.backends.base import FailureCode, JobRequest, JobStatus, StatusCode
from backlot.services.backends.comfyui.adapter import ComfyUIBackend
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.models import ServiceKind, ServiceRecord
from tests.helpers import TcpProxy, serve


def record_for(url: str) -> ServiceRecord:
    host, port = url.rsplit("/", 1)[-1].split(":")
    return ServiceRecord(ServiceKind("comfyui"), host, int(port), url, "comfyui")


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    p = ConnectionPool()
    yield p
    await p.close()


def backend(url: str, pool: ConnectionPool, **kw: Any) -> ComfyUIBackend:
    rec = record_for(url)
    return ComfyUIBackend(rec, lambda: pool.session(rec.id), **kw)


async def collect(it: AsyncIterator[JobStatus]) -> list[JobStatus]:
    return [s async for s in it]


def image(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


def job(tmp_path: Path, task: str = "text_to_image", prompt: str = "a lighthouse at dusk", **params: Any) -> JobRequest:
    inputs = params.pop("inputs", [])
    return JobRequest("job1", task, prompt, params, inputs, tmp_path / "out")


async def test_text_to_image_gives_a_png_with_step_progress(standin: Any, pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("comfyui", speed=5)
    statuses = await collect(backend(sp.url, pool).submit(job(tmp_path, width=256, height=192, steps=6, seed=7)))
    codes = [s.code for s in statuses]
    assert codes[0] is StatusCode.QUEUED and statuses[0].remote_ref
    assert StatusCode.RUNNING in codes and codes[-1] is StatusCode.SUCCEEDED, statuses[-1]
    steps = [(s.step, s.total) for s in statuses if s.unit == "steps"]
    assert steps and steps[-1] == (6, 6)
    fractions = [s.fraction for s in statuses if s.code is StatusCode.PROGRESS]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    (out,) = statuses[-1].outputs
    assert out.mime == "image/png" and out.path.parent == tmp_path / "out" and out.bytes == out.path.stat().st_size
    assert image(out.path).size == (256, 192)
    assert statuses[0].detail["values"]["seed"] == 7


async def test_model_free_template_and_prompt_colour(standin: Any, pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("comfyui")
    b = backend(sp.url, pool)
    a = await collect(b.submit(job(tmp_path, prompt="red", workflow="standin_image", width=64, height=64)))
    c = await collect(b.submit(job(tmp_path, prompt="blue", workflow="standin_image", width=64, height=64)))
    pa, pc = (image(s[-1].outputs[0].path).getpixel((32, 32)) for s in (a, c))
    assert pa != pc
    assert a[-1].outputs[0].path != c[-1].outputs[0].path  # never overwrites an earlier output


async def test_text_to_video_gives_an_mp4_with_the_requested_frames(standin: Any, pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("comfyui", speed=10)
    statuses = await collect(backend(sp.url, pool).submit(
        job(tmp_path, task="text_to_video", width=160, height=96, frames=9, steps=3, fps=8)))
    assert statuses[-1].code is StatusCode.SUCCEEDED, statuses[-1]
    (out,) = statuses[-1].outputs
    assert out.mime == "video/mp4"
    with av.open(str(out.path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
        assert (c.streams.video[0].width, c.streams.video[0].height) == (160, 96)
    assert frames == 9


async def test_upscale_uploads_the_input_image(standin: Any, pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("comfyui", speed=10)
    src = tmp_path / "still.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(src)
    statuses = await collect(backend(sp.url, pool).submit(job(tmp_path, task="upscale", inputs=[src])))
    assert statuses[-1].code is StatusCode.SUCCEEDED, statuses[-1]
    assert image(statuses[-1].outputs[0].path).size == (160, 120)
    missing = await collect(backend(sp.url, pool).submit(job(tmp_path, task="upscale")))
    assert missing[-1].failure is FailureCode.VALIDATION and "needs an input image" in missing[-1].message


async def test_validation_errors_become_sentences(standin: Any, pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("comfyui")
    b = backend(sp.url, pool)
    (st,) = await collect(b.submit(job(tmp_path, steps=0)))
    assert st.code is StatusCode.FAILED and st.failure is FailureCode.VALIDATION
    assert st.message == "node 3 (KSampler): steps must be at least 1 (got 0)"
    (st,) = await collect(b.submit(job(tmp_path, checkpoint="nope.safetensors")))
    assert st.message.startswith("node 4 (CheckpointLoaderSimple): ckpt_name 'nope.safetensors' is not available")
    (st,) = await collect(b.submit(job(tmp_path, workflow="no_such_template")))
    assert "no workflow template named 'no_such_template'" in st.message
    (st,) = await collect(b.submit(job(tmp_path, task="voice_conversion")))
    assert st.failure is FailureCode.VALIDATION and "no template for the task" in st.message


async def test_cancel_pending_and_running(standin: Any, pool: ConnectionPool, tmp_path: Path) -> None:
    sp = standin("comfyui")
    b = backend(sp.url, pool)
    running = b.submit(job(tmp_path, workflow="standin_progress", seconds=60))
    pending = b.submit(job(tmp_path, workflow="standin_progress", seconds=61))
    first = await running.__anext__()
    async for st in running:  # wait until it really runs
        if st.code is StatusCode.PROGRESS and st.step is not None:
            break
    second = await pending.__anext__()
    assert second.code is StatusCode.QUEUED
    result = await b.cancel(second.remote_ref)  # type: ignore[arg-type]
    assert result.confirmed and "queue" in result.message
    rest = [s async for s in pending]
    assert rest[-1].code is StatusCode.CANCELLED
    result = await b.cancel(first.remote_ref)  # type: ignore[arg-type]
    assert not result.confirmed and "interrupt sent" in result.message
    tail = [s async for s in running]
    assert tail[-1].code is StatusCode.CANCELLED and "interrupted" in tail[-1].message


async def test_websocket_dropped_mid_job_still_completes_via_history(standin: Any, pool: ConnectionPool,
                                                                      tmp_path: Path) -> None:
    sp = standin("comfyui")
    proxy = TcpProxy(sp.port)
    url = await proxy.start()
    try:
        statuses = []
        async for st in backend(url, pool, poll_interval=0.05).submit(
                job(tmp_path, workflow="standin_progress", seconds=1.0)):
            statuses.append(st)
            if st.code is StatusCode.PROGRESS and st.step is not None and proxy.ws_links:
                assert proxy.cut_websockets() == 1
    finally:
        await proxy.close()
    assert statuses[-1].code is StatusCode.SUCCEEDED, statuses[-1]
    assert any(s.message == "following by polling" for s in statuses), [(s.code.value, s.message, s.step) for s in statuses]
    assert image(statuses[-1].outputs[0].path).format == "PNG"


async def test_lookup_recovers_a_finished_job_and_knows_unknown_ones(standin: Any, pool: ConnectionPool,
                                                                     tmp_path: Path) -> None:
    sp = standin("comfyui")
    b = backend(sp.url, pool)
    done = await collect(b.submit(job(tmp_path, workflow="standin_image", width=32, height=32)))
    pid = done[0].remote_ref
    fresh = backend(sp.url, pool)  # as after a restart of Backlot
    again = await collect(fresh.lookup(pid, job(tmp_path / "recovered", workflow="standin_image")))  # type: ignore[arg-type]
    assert again[-1].code is StatusCode.SUCCEEDED and again[-1].outputs[0].path.parent == tmp_path / "recovered" / "out"
    unknown = await collect(fresh.lookup("not-a-prompt", job(tmp_path)))
    assert unknown[-1].failure is FailureCode.UNKNOWN_REMOTE


async def _answer_prompt(request: web.Request) -> web.Response:
    return web.json_response({"prompt_id": "p1", "number": 0, "node_errors": {}})


async def _history_done(request: web.Request) -> web.Response:
    return web.json_response({"p1": {"prompt": [], "outputs": {"9": {"images": [
        {"filename": "x.png", "subfolder": "", "type": "output"}]}}, "status": {"status_str": "success",
                              "completed": True, "messages": []}}})


async def _never(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    return web.Response()


async def _truncated(request: web.Request) -> web.Response:
    return web.Response(body=b'{"prompt_id": "p1", "numb', content_type="application/json")


async def _boom(request: web.Request) -> web.Response:
    return web.Response(status=500, text="500 Internal Server Error")


async def _empty_queue(request: web.Request) -> web.Response:
    return web.json_response({"queue_running": [], "queue_pending": []})


@pytest.mark.parametrize(("routes", "failure", "words"), [
    ({"/prompt": _boom}, FailureCode.BAD_RESPONSE, "HTTP 500"),
    ({"/prompt": _truncated}, FailureCode.BAD_RESPONSE, "not JSON"),
    ({"/prompt": _answer_prompt, "/history/{id}": _history_done, "/queue": _empty_queue, "/view": _never},
     FailureCode.MISSING_OUTPUT, "could not be fetched"),
])
async def test_bad_backend_answers_fail_clearly_without_hanging(routes: dict[str, Any], failure: FailureCode, words: str,
                                                                pool: ConnectionPool, tmp_path: Path) -> None:
    async with serve(routes) as url:
        b = backend(url, pool, ws_idle=0.5, poll_interval=0.05, download_timeout=1.0, request_timeout=2.0)
        statuses = await asyncio.wait_for(collect(b.submit(job(tmp_path, workflow="standin_image"))), 20)
    assert statuses[-1].code is StatusCode.FAILED and statuses[-1].failure is failure, statuses[-1]
    assert words in statuses[-1].message
    assert not list((tmp_path / "out").glob("*.part")) if (tmp_path / "out").exists() else True


async def test_dead_backend_is_unreachable(pool: ConnectionPool, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (st,) = await collect(backend(f"http://127.0.0.1:{port}", pool).submit(job(tmp_path, workflow="standin_image")))
    assert st.failure is FailureCode.UNREACHABLE and "refused" in st.message
