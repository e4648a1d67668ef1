"""The Wan2GP MCP stand-in, run as a real process and driven through the official mcp client."""
from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from mcp import ClientSession

try:
    from mcp.client.streamable_http import streamable_http_client as open_streams
except ImportError:  # mcp before 1.2x only has the older, now deprecated, name
    from mcp.client.streamable_http import streamablehttp_client as open_streams  # type: ignore[assignment]

from conftest import conformance_script

from backlot.standins import video
from backlot.standins.launcher import StandinProcess

pytestmark = pytest.mark.slow

StartStandin = Callable[..., StandinProcess]


@asynccontextmanager
async def mcp_session(base_url: str) -> AsyncIterator[ClientSession]:
    """An initialised MCP client session against the stand-in's /mcp/ endpoint."""
    async with open_streams(base_url + "/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structuredContent."""
    res = await session.call_tool(tool, args)
    assert not res.isError, res.content
    assert res.structuredContent is not None
    return res.structuredContent


async def poll_job(session: ClientSession, job_id: str, until: Callable[[dict[str, Any]], bool],
                   timeout: float = 20.0) -> dict[str, Any]:
    """Poll wangp_get_job (all events) until ``until(snapshot)`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        snap = await call(session, "wangp_get_job", {"job_id": job_id, "event_limit": 500})
        if until(snap):
            return snap
        assert time.monotonic() < deadline, f"job {job_id} did not reach the condition in {timeout} s: {snap}"
        await asyncio.sleep(0.05)


def kinds(snap: dict[str, Any]) -> list[str]:
    """The event kinds of a snapshot, in order."""
    return [e["kind"] for e in snap["events"]]


def listed(res: Any) -> list[dict[str, Any]]:
    """The list inside a list-returning tool's structuredContent."""
    assert not res.isError, res.content
    return res.structuredContent["result"]


def count_frames(data: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of an MP4 given as bytes, by decoding every frame."""
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
    return len(frames), frames[0].width, frames[0].height


def test_conformance_script_passes(standin: StartStandin) -> None:
    """The shared conformance script (which also passes against the real Wan2GP) passes with 0 failures."""
    sp = standin("wan2gp", speed=10)
    done = subprocess.run([sys.executable, str(conformance_script("wan2gp_mcp.py")), sp.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout


async def test_generate_poll_download_real_mp4(standin: StartStandin) -> None:
    """A video job reports progress, lands in outputs/ and the gallery, and downloads once as a real MP4."""
    sp = standin("wan2gp", speed=10)
    settings = {"model_type": "t2v_1.3B", "prompt": "A red fox, running!", "resolution": "320x192",
                "video_length": 17, "num_inference_steps": 4, "seed": 42}
    async with mcp_session(sp.url) as session:
        started = time.monotonic()
        snap = await call(session, "wangp_generate", {"source": settings})
        assert {"job_id", "done", "cancel_requested", "webui_submission_ready", "webui_load_queue_token",
                "created_at", "updated_at", "events", "result"} <= set(snap)
        final = await poll_job(session, snap["job_id"], lambda s: s["done"])
        assert time.monotonic() - started < 10  # about 0.2 s unloaded; generous for a busy machine

        result = final["result"]
        assert result["success"] is True and result["cancelled"] is False
        assert (result["total_tasks"], result["successful_tasks"], result["failed_tasks"]) == (1, 1, 0)
        assert kinds(final)[0] == "started" and kinds(final)[-1] == "completed"
        progress = [e["data"] for e in final["events"] if e["kind"] == "progress" and e["data"]["phase"] == "denoising"]
        assert [p["current_step"] for p in progress] == [1, 2, 3, 4]
        assert progress[-1]["progress"] == 100 and progress[0]["total_steps"] == 4
        assert {"phase", "status", "progress", "current_step", "total_steps", "unit"} <= set(progress[0])

        out = Path(result["generated_files"][0])
        assert out.parent.name == "outputs" and out.is_file()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d-\d\dh\d\dm\d\ds_seed42_A-red-fox-running\.mp4", out.name), out.name
        (item,) = result["gallery_items"]
        assert item["media_type"] == "video" and item["frame_count"] == 17 and item["resolution"] == "320x192"
        assert [g["gallery_id"] for g in listed(await session.call_tool("wangp_list_gallery", {}))] == [item["gallery_id"]]

        recent = await call(session, "wangp_get_job", {"job_id": snap["job_id"]})
        assert len(recent["events"]) == min(20, len(final["events"]))
        assert (await call(session, "wangp_get_job", {"job_id": snap["job_id"], "event_limit": 0}))["events"] == []

        dl = await call(session, "wangp_create_gallery_download", {"gallery_id": item["gallery_id"]})
    assert dl["download_url"].startswith("/wangp_api/gallery/download/") and dl["expires_in_seconds"] == 600
    assert dl["filename"] == out.name and dl["media_type"] == "video"
    async with aiohttp.ClientSession() as http:
        async with http.get(sp.url + dl["download_url"]) as resp:
            assert resp.status == 200
            body = await resp.read()
        async with http.get(sp.url + dl["download_url"]) as again:
            assert again.status == 404
    assert len(body) == dl["size"]
    assert count_frames(body) == (17, 320, 192)


async def test_cancel_mid_run_and_queue_moves_on(standin: StartStandin) -> None:
    """Jobs run one at a time; cancelling the running one ends it promptly and the next job runs."""
    sp = standin("wan2gp", speed=10)
    long = {"model_type": "t2v_1.3B", "prompt": "long", "resolution": "1280x720", "video_length": 81,
            "num_inference_steps": 200, "seed": 1}  # about 23 s at --speed 10
    short = {"model_type": "t2v_1.3B", "prompt": "short", "resolution": "320x192", "video_length": 5,
             "num_inference_steps": 2, "seed": 2}
    async with mcp_session(sp.url) as session:
        first = await call(session, "wangp_generate", {"source": long})
        second = await call(session, "wangp_generate", {"source": short})
        await poll_job(session, first["job_id"],
                       lambda s: any(e["kind"] == "progress" and e["data"]["phase"] == "denoising" for e in s["events"]))
        waiting = await call(session, "wangp_get_job", {"job_id": second["job_id"]})
        assert waiting["done"] is False and waiting["events"] == []  # still queued behind the first

        cancelled = await call(session, "wangp_cancel_job", {"job_id": first["job_id"]})
        assert cancelled["cancel_requested"] is True
        final = await poll_job(session, first["job_id"], lambda s: s["done"], timeout=5)
        result = final["result"]
        assert result["cancelled"] is True and result["success"] is False
        assert result["generated_files"] == [] and result["gallery_items"] == []
        assert final["cancel_requested"] is True
        assert [e["data"]["cancelled"] for e in final["events"] if e["kind"] == "error"] == [True]

        after = await poll_job(session, second["job_id"], lambda s: s["done"])
        assert after["result"]["success"] is True and len(after["result"]["gallery_items"]) == 1


async def test_unknown_model_fails_at_runtime_missing_model_at_validation(standin: StartStandin) -> None:
    """An unknown model_type is accepted and fails inside the job (runtime); no model_type fails validation."""
    sp = standin("wan2gp", speed=10)
    async with mcp_session(sp.url) as session:
        res = await session.call_tool("wangp_generate", {"source": {"model_type": "no_such_model", "prompt": "x"}})
        assert not res.isError and res.structuredContent is not None
        final = await poll_job(session, res.structuredContent["job_id"], lambda s: s["done"])
        (error,) = [e["data"] for e in final["events"] if e["kind"] == "error"]
        assert error["stage"] == "runtime" and "no_such_model" in error["message"]
        assert final["result"]["success"] is False and final["result"]["failed_tasks"] == 1

        snap = await call(session, "wangp_generate", {"source": [{"prompt": "no model"}], "wait": True})
        assert snap["done"] is True
        assert [e["data"]["stage"] for e in snap["events"] if e["kind"] == "error"] == ["validation"]

        missing = await session.call_tool("wangp_get_job", {"job_id": "nope"})
        assert missing.isError and "'Unknown WanGP job_id: nope'" in missing.content[0].text  # type: ignore[union-attr]


async def test_seconds_length_wait_upload_and_clean_exit(standin: StartStandin, tmp_path: Path) -> None:
    """video_length "2s" at force_fps 8 gives 16 frames; uploads land in the gallery within max_bytes; SIGTERM exits 0."""
    sp = standin("wan2gp", "--max-upload-bytes", "100000", speed=10)
    async with mcp_session(sp.url) as session:
        snap = await call(session, "wangp_generate", {"wait": True, "timeout_s": 30, "source": {
            "model_type": "t2v_1.3B", "prompt": "two seconds", "resolution": "256x144", "video_length": "2s",
            "force_fps": 8, "num_inference_steps": 2}})
        assert snap["done"] is True and snap["result"]["success"] is True
        (item,) = snap["result"]["gallery_items"]
        assert (item["frame_count"], item["fps"], item["resolution"]) == (16, 8, "256x144")

        clip = tmp_path / "clip.mp4"
        video.write_mp4(clip, 64, 64, 5, 16, "upload", 7)
        up = await call(session, "wangp_create_gallery_upload", {"filename": "../clip.mp4"})
        too_big = await call(session, "wangp_create_gallery_upload", {"filename": "big.mp4"})
        assert up["method"] == "PUT" and up["filename"] == "clip.mp4" and up["max_bytes"] == 100000
        assert re.fullmatch(r"/wangp_api/gallery/upload/[0-9a-f]{32}", up["upload_url"])
        async with aiohttp.ClientSession() as http:
            async with http.put(sp.url + up["upload_url"], data=clip.read_bytes()) as resp:
                assert resp.status == 200
                stored = await resp.json()
            async with http.put(sp.url + up["upload_url"], data=b"again") as resp:
                assert resp.status == 404  # tokens are single-use
            async with http.put(sp.url + too_big["upload_url"], data=b"\0" * 200_000) as resp:
                assert resp.status == 413
        assert stored["status"] == "uploaded" and stored["frame_count"] == 5 and stored["filename"] == "clip.mp4"
        gallery = listed(await session.call_tool("wangp_list_gallery", {"media_type": "video"}))
        assert [g["filename"] for g in gallery][-1] == "clip.mp4" and len(gallery) == 2
    assert sp.stop() == 0


async def test_model_catalogue_tools(standin: StartStandin) -> None:
    """Model records have the real fields; schema, defaults and availability answer; image and audio models work."""
    sp = standin("wan2gp", speed=10)
    async with mcp_session(sp.url) as session:
        records = listed(await session.call_tool("wangp_list_models", {"limit": 50}))
        assert len(records) <= 10 and {r["main_output"][0] for r in records} == {"video", "image", "audio"}
        assert all({"model_type", "family", "family_label", "base_model_type", "finetune", "main_output", "outputs",
                    "inputs", "media_inputs", "capabilities", "name"} <= set(r) for r in records)
        found = await call(session, "wangp_search_models", {"query": "text2video", "main_output": "video"})
        assert {m["model_type"] for m in found["matches"]} == {"t2v_1.3B", "t2v"} and found["total_matches"] == 2
        assert (await call(session, "wangp_get_model_schema", {"model_type": "t2v_1.3B"}))["result"]["model_type"] == "t2v_1.3B"
        assert (await call(session, "wangp_get_model_schema", {"model_type": "nope"})) == {"result": None}
        defaults = await call(session, "wangp_get_default_settings", {"model_type": "t2v_1.3B"})
        assert defaults["model_type"] == "t2v_1.3B" and defaults["video_length"] == 81
        assert (await call(session, "wangp_get_model_availability", {"model_type": "t2v"}))["status"] == "missing"
        assert (await call(session, "wangp_get_model_availability", {"model_type": "t2v_1.3B"}))["available"] is True

        snap = await call(session, "wangp_generate", {"wait": True, "timeout_s": 30, "source": [
            {"model_type": "flux", "prompt": "a still", "resolution": "64x48", "num_inference_steps": 1},
            {"model_type": "ace_step_v1", "prompt": "a tune", "duration_seconds": 1, "num_inference_steps": 1}]})
        items = snap["result"]["gallery_items"]
        assert [(i["media_type"], i["gallery"], Path(i["filename"]).suffix) for i in items] == [
            ("image", "visual", ".png"), ("audio", "audio", ".wav")]
        assert items[0]["resolution"] == "64x48" and items[1]["duration_seconds"] == 1
