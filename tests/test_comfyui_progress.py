"""ComfyUI progress over the whole workflow and latent previews: tracker, decoding, throttle, stand-in, API."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from backlot.services.backends.base import JobStatus, StatusCode
from backlot.services.backends.comfyui.follow import ProgressTracker, decode_preview
from backlot.services.backends.previews import PreviewWriter, image_size
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.events import Event, JobPreviewed, JobUpdated
from tests.apiclient import running_api
from tests.test_adapter_comfyui import backend, job

WORKFLOW = {"1": {"class_type": "CheckpointLoaderSimple"}, "2": {"class_type": "CLIPTextEncode"},
            "3": {"class_type": "CLIPTextEncode"}, "4": {"class_type": "EmptyLatentImage"},
            "5": {"class_type": "KSampler"}, "6": {"class_type": "VAEDecode"}, "7": {"class_type": "SaveImage"}}


def _node(value: float, maximum: float, state: str = "running") -> dict[str, Any]:
    return {"value": value, "max": maximum, "state": state}


def _png(size: tuple[int, int] = (24, 16), color: tuple[int, int, int] = (10, 200, 30), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    p = ConnectionPool()
    yield p
    await p.close()


# ----- the tracker, without a server -----
def test_progress_is_weighted_over_the_nodes_that_run_and_never_goes_back() -> None:
    tracker = ProgressTracker(WORKFLOW)
    tracker.on_cached(["1", "2", "3"])  # cached: out of the total (KSampler 20 + VAEDecode 3 + two nodes of 1 = 25)
    seen = [tracker.fraction()]
    state: dict[str, Any] = {"4": _node(0, 1)}
    tracker.on_state(state)
    tracker.on_executing("4")
    seen.append(tracker.fraction())
    state.update({"4": _node(1, 1, "finished"), "5": _node(0, 10)})
    tracker.on_state(state)
    after_latent = tracker.fraction()
    assert after_latent == pytest.approx(1 / 25)  # a light node counts 1/25
    for step in range(1, 11):
        state["5"] = _node(step, 10)
        tracker.on_state(state)
        tracker.on_progress("5", step, 10)
        seen.append(tracker.fraction())
        if step == 5:
            assert seen[-1] == pytest.approx((1 + 10) / 25)  # half a sampler is 10 of 25
    tracker.on_state({**state, "5": _node(3, 10)})  # a late, stale frame must not pull progress back
    seen.append(tracker.fraction())
    state.update({"5": _node(10, 10, "finished"), "6": _node(0, 1)})
    tracker.on_state(state)
    after_sampler = tracker.fraction()
    assert after_sampler - after_latent == pytest.approx(20 / 25)  # the heavy node moved the bar most
    state.update({"6": _node(1, 1, "finished"), "7": _node(1, 1, "finished"), "99.0.1": _node(1, 1, "finished")})
    tracker.on_state(state)  # an id a subgraph expanded into is not in the workflow: ignored
    seen += [after_sampler, tracker.fraction()]
    assert seen == sorted(seen) and seen[0] == 0.0
    assert max(seen) < 1.0 and seen[-1] == pytest.approx(0.99)  # 1.0 only when the server says success


def test_progress_from_old_servers_executing_and_progress_frames() -> None:
    tracker = ProgressTracker(WORKFLOW)
    seen = []
    for node in ("1", "2", "3", "4"):
        tracker.on_executing(node)
        seen.append(tracker.fraction())
    tracker.on_executing("5")  # node 4 is done now: executing names the next one
    seen.append(tracker.fraction())
    assert seen[-1] == pytest.approx(4 / 28)
    for step in range(0, 21, 5):
        tracker.on_progress("5", step, 20)
        seen.append(tracker.fraction())
    tracker.on_executing("6")
    seen.append(tracker.fraction())
    assert seen == sorted(seen) and seen[-1] == pytest.approx(24 / 28) and seen[-1] < 1


# ----- binary frames and the preview file -----
def test_both_preview_frame_forms_decode_byte_for_byte() -> None:
    jpeg, png = _png(fmt="JPEG"), _png()
    plain = decode_preview(struct.pack(">II", 1, 1) + jpeg)
    assert plain is not None and (plain.mime, plain.data, plain.prompt_id) == ("image/jpeg", jpeg, None)
    plain_png = decode_preview(struct.pack(">II", 1, 2) + png)
    assert plain_png is not None and plain_png.mime == "image/png"
    meta = json.dumps({"node_id": "5", "prompt_id": "p1", "display_node_id": "5", "parent_node_id": None,
                       "real_node_id": "5", "image_type": "image/png"}).encode()
    tagged = decode_preview(struct.pack(">II", 4, len(meta)) + meta + png)
    assert tagged is not None and (tagged.mime, tagged.data, tagged.prompt_id, tagged.node_id) == (
        "image/png", png, "p1", "5")
    text = b"\x00\x00\x00\x03" + struct.pack(">I", 1) + b"5" + b"hello"
    for broken in (text, b"\x00\x00\x00\x01", struct.pack(">II", 1, 7) + png, struct.pack(">II", 4, 999) + meta,
                   struct.pack(">II", 4, 3) + b"{x}" + png):
        assert decode_preview(broken) is None


async def test_preview_writer_throttles_on_its_clock_and_replaces_the_file(tmp_path: Path) -> None:
    now = [0.0]
    writer = PreviewWriter(tmp_path / "job", rate=4, clock=lambda: now[0])
    kept = []
    for t in (0.0, 0.1, 0.2, 0.25, 0.3, 0.49, 0.5, 1.9):
        now[0] = t
        kept.append(writer.due())
    assert kept == [True, False, False, True, False, False, True, True] and writer.offered == 8
    jpeg = await writer.write(_png((40, 30), fmt="JPEG"), "image/jpeg")
    assert jpeg.path == tmp_path / "job" / "preview.jpg" and (jpeg.width, jpeg.height, jpeg.seq) == (40, 30, 1)
    png = await writer.write(_png((20, 10)), "image/png")
    assert png.path.name == "preview.png" and (png.width, png.height, png.seq) == (20, 10, 2)
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["preview.png"]  # one file, no temp left over
    assert image_size(b"not an image") == (None, None)
    await writer.discard()
    assert list((tmp_path / "job").iterdir()) == []


# ----- against the stand-in -----
def sleeper(seconds: float) -> dict[str, Any]:
    return {"1": {"class_type": "StandinSleep", "inputs": {"seconds": seconds}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


@pytest.mark.parametrize("with_metadata", [True, False])
async def test_standin_sends_previews_in_the_form_the_client_asked_for(standin: Any, with_metadata: bool) -> None:
    sp = standin("comfyui")
    cid = uuid.uuid4().hex
    previews: list[bytes] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sp.url}/ws?clientId={cid}") as ws:
        if with_metadata:
            await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        async with http.post(f"{sp.url}/prompt", json={"prompt": sleeper(1.0), "client_id": cid}) as r:
            pid = (await r.json())["prompt_id"]
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    previews.append(msg.data)
                elif json.loads(msg.data)["type"] == "execution_success":
                    break
    assert len(previews) >= 10  # about 20 a second: more than Backlot keeps (4 a second)
    for frame in previews:
        event, word = struct.unpack(">II", frame[:8])
        if with_metadata:
            meta = json.loads(frame[8:8 + word])
            assert event == 4 and meta == {"node_id": "1", "prompt_id": pid, "display_node_id": "1",
                                           "parent_node_id": None, "real_node_id": "1", "image_type": "image/png"}
            image = frame[8 + word:]
        else:
            assert (event, word) == (1, 2)  # PREVIEW_IMAGE, PNG
            image = frame[8:]
        assert Image.open(io.BytesIO(image)).size == (512, 512)  # scaled to the preview size, as ComfyUI does


@pytest.mark.parametrize("with_metadata", [True, False])
async def test_adapter_previews_are_throttled_and_stop_with_the_job(standin: Any, pool: ConnectionPool, tmp_path: Path,
                                                                     with_metadata: bool) -> None:
    sp = standin("comfyui")
    b = backend(sp.url, pool, preview_metadata=with_metadata, preview_rate=4)
    started = time.monotonic()
    statuses: list[JobStatus] = [s async for s in b.submit(job(tmp_path, workflow="standin_progress", seconds=1.5))]
    took = time.monotonic() - started
    previews = [s.preview for s in statuses if s.preview is not None]
    assert 3 <= len(previews) <= 4 * took + 1, (len(previews), took)  # the stand-in sent ~30
    assert [p.seq for p in previews] == list(range(1, len(previews) + 1))
    assert {(p.mime, p.width, p.height, p.path.name) for p in previews} == {("image/png", 512, 512, "preview.png")}
    assert statuses[-1].code is StatusCode.SUCCEEDED and statuses[-1].preview is None
    assert not previews[0].path.exists()  # the result replaced it
    fractions = [s.fraction for s in statuses if s.fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and max(fractions[:-1]) < 1


async def test_multi_node_progress_is_weighted_and_cached_nodes_drop_out(standin: Any, pool: ConnectionPool,
                                                                         tmp_path: Path) -> None:
    sp = standin("comfyui", speed=2)
    b = backend(sp.url, pool)
    runs = []
    for seed in (1, 2):  # the second run has the loaders and encoders cached
        statuses = [s async for s in b.submit(job(tmp_path, width=256, height=256, steps=20, seed=seed))]
        assert statuses[-1].code is StatusCode.SUCCEEDED, statuses[-1]
        fractions = [s.fraction for s in statuses if s.fraction is not None and s.code is not StatusCode.SUCCEEDED]
        assert fractions == sorted(fractions) and fractions[-1] < 1
        sampling = [s.fraction for s in statuses if s.message.endswith("(KSampler)") and s.fraction is not None]
        assert any(s.unit == "steps" for s in statuses)
        assert sampling[-1] - sampling[0] > 0.6  # 20 of the 28 weight units are the sampler's
        assert {s.preview.mime for s in statuses if s.preview} == {"image/jpeg"}
        runs.append(sampling[0])
    assert runs[1] < 0.02 < runs[0]  # run 2: nothing ran before the sampler, so nothing was done before it


async def test_previews_through_the_api_and_the_bus(standin: Any) -> None:
    sp = standin("comfyui")
    async with running_api(sp.url) as api:
        order: list[Event] = []
        unsubscribe = api.center.bus.subscribe(order.append, JobUpdated, JobPreviewed)
        c = await api.client()
        await c.result("events.subscribe", {"topics": ["job.updated", "job.previewed"]})
        job_ = await c.result("jobs.submit", {"task": "text_to_image", "prompt": "a lighthouse",
                                              "params": {"width": 256, "height": 192, "steps": 60}})
        first = await c.notification("job.previewed", lambda p: p["job_id"] == job_["id"], timeout=60)
        assert first["mime"] == "image/jpeg" and (first["width"], first["height"]) == (512, 384)
        shown = await c.result("jobs.preview", {"job": job_["id"]})
        assert shown["mime"] == "image/jpeg" and Path(shown["path"]).parent.name == job_["id"]
        assert Image.open(io.BytesIO(base64.b64decode(shown["content"]))).size == (512, 384)
        await c.notification("job.updated", lambda p: p["job"]["id"] == job_["id"] and p["job"]["state"] == "succeeded",
                             timeout=60)
        before_end = len(c.inbox)
        assert any(m.get("method") == "job.previewed" for m in c.inbox[:before_end])
        await c.result("session.ping")  # whatever was published before the answer has arrived by now
        assert [m for m in c.inbox[before_end:] if m.get("method") == "job.previewed"] == []
        unsubscribe()
        ended = next(i for i, e in enumerate(order) if isinstance(e, JobUpdated) and e.job.state.terminal)
        previewed = [i for i, e in enumerate(order) if isinstance(e, JobPreviewed)]
        assert len(previewed) >= 2 and max(previewed) < ended  # none after the job's terminal update
        fractions = [e.job.status.fraction for e in order if isinstance(e, JobUpdated)]
        fractions = [f for f in fractions if f is not None]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and max(fractions[:-1]) < 1
        done = await c.result("jobs.get", {"job": job_["id"]})
        assert "preview" not in done["status"] and not Path(first["path"]).exists()
        assert await c.result("jobs.preview", {"job": job_["id"]}) is None
