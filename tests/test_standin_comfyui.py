"""The ComfyUI stand-in, driven over its wire protocol as a real ComfyUI 0.8 client would."""
from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.conftest import conformance_script


def tiny(prefix: str = "backlot", color: int = 0x336699, size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": size[0], "height": size[1], "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def sleeper(seconds: float) -> dict[str, Any]:
    return {"1": {"class_type": "StandinSleep", "inputs": {"seconds": seconds}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


async def run_prompt(session: aiohttp.ClientSession, url: str, prompt: dict[str, Any],
                     on_frame: Any = None, timeout: float = 30) -> tuple[str, list[dict[str, Any]]]:
    """Queue a prompt with a fresh client id and collect its frames up to the trailing `executing null`."""
    cid = uuid.uuid4().hex
    frames: list[dict[str, Any]] = []
    async with session.ws_connect(f"{url}/ws?clientId={cid}") as ws:
        frames.append(await ws.receive_json(timeout=10))
        async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": cid}) as r:
            assert r.status == 200, await r.text()
            pid = (await r.json())["prompt_id"]
        async with asyncio.timeout(timeout):
            while True:
                frame = await text_frame(ws)
                frames.append(frame)
                if on_frame is not None:
                    await on_frame(frame, pid)
                if frame["type"] == "executing" and frame["data"].get("node") is None and frame["data"].get("prompt_id") == pid:
                    return pid, frames


async def text_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float | None = None) -> dict[str, Any]:
    """The next JSON frame, skipping binary ones (latent previews)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame: dict[str, Any] = json.loads(msg.data)
            return frame
        assert msg.type == aiohttp.WSMsgType.BINARY, msg


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


def test_conformance_script_passes(standin: Any) -> None:
    sp = standin("comfyui", speed=4)
    done = subprocess.run([sys.executable, str(conformance_script("comfyui.py")), sp.url, "--json"],
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["failed"] == 0, report
    assert report["passed"] == 27


async def test_tiny_workflow_png_and_exact_ws_sequence(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    pid, frames = await run_prompt(http, sp.url, tiny(color=0x336699))
    seq = [f["type"] for f in frames]
    assert seq == ["status", "status", "status", "execution_start", "execution_cached", "progress_state", "executing",
                   "progress_state", "progress_state", "executing", "executed", "progress_state",
                   "execution_success", "status", "executing"]
    assert [f["data"]["node"] for f in frames if f["type"] == "executing"] == ["1", "2", None]
    last_state = [f for f in frames if f["type"] == "progress_state"][-1]["data"]["nodes"]
    assert {k: v["state"] for k, v in last_state.items()} == {"1": "finished", "2": "finished"}
    image = next(f for f in frames if f["type"] == "executed")["data"]["output"]["images"][0]
    assert image == {"filename": "backlot_00001_.png", "subfolder": "", "type": "output"}
    async with http.get(f"{sp.url}/view", params=image) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/png"
        assert r.headers["Content-Disposition"] == 'filename="backlot_00001_.png"'
        png = Image.open(io.BytesIO(await r.read()))
    assert png.size == (64, 48) and png.getpixel((10, 10)) == (0x33, 0x66, 0x99)
    assert json.loads(png.text["prompt"])["1"]["class_type"] == "EmptyImage"
    async with http.get(f"{sp.url}/api/history/{pid}") as r:
        entry = (await r.json())[pid]
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["prompt"][1] == pid and entry["prompt"][4] == ["2"]


async def test_events_go_only_to_the_prompts_client(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    async with http.ws_connect(f"{sp.url}/ws?clientId=observer") as observer:
        first = await observer.receive_json(timeout=10)
        assert first["data"]["sid"] == "observer"
        await run_prompt(http, sp.url, tiny())
        seen = []
        while True:  # the observer got exactly the queue broadcasts: enqueue (twice) and job end
            seen.append(await observer.receive_json(timeout=10))
            if len(seen) == 3:
                break
    assert [f["type"] for f in seen] == ["status"] * 3
    assert [f["data"]["status"]["exec_info"]["queue_remaining"] for f in seen] == [1, 1, 0]


async def test_cached_rerun_sends_no_executing_frames(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    _, first = await run_prompt(http, sp.url, tiny("again"))
    _, second = await run_prompt(http, sp.url, tiny("again"))
    cached = next(f for f in second if f["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1", "2"]
    assert [f["data"]["node"] for f in second if f["type"] == "executing"] == [None]
    outputs = [f["data"]["output"] for frames in (first, second) for f in frames if f["type"] == "executed"]
    assert outputs[0] == outputs[1]


async def test_validation_error_has_comfyuis_exact_shape(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    wf = tiny()
    del wf["1"]["inputs"]["color"]
    del wf["2"]["inputs"]["filename_prefix"]
    async with http.post(f"{sp.url}/prompt", json={"prompt": wf}) as r:
        assert r.status == 400 and r.headers["Content-Type"] == "application/json; charset=utf-8"
        body = await r.json()
    assert body == {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                  "details": "Required input is missing: filename_prefix", "extra_info": {}},
        "node_errors": {
            "1": {"errors": [{"type": "required_input_missing", "message": "Required input is missing", "details": "color",
                              "extra_info": {"input_name": "color"}}], "dependent_outputs": ["2"], "class_type": "EmptyImage"},
            "2": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                              "details": "filename_prefix", "extra_info": {"input_name": "filename_prefix"}}],
                  "dependent_outputs": ["2"], "class_type": "SaveImage"}}}
    wf = tiny()
    wf["1"]["inputs"]["width"] = "abc"
    async with http.post(f"{sp.url}/prompt", json={"prompt": wf}) as r:
        err = (await r.json())["node_errors"]["1"]["errors"][0]
    assert err["type"] == "invalid_input_type" and err["message"] == "Failed to convert an input value to a INT value"
    assert err["details"] == "width, abc, invalid literal for int() with base 10: 'abc'"
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bogus", "width": 4,
                                                       "height": 4, "crop": "disabled"}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}}
    async with http.post(f"{sp.url}/prompt", json={"prompt": wf}) as r:
        body = await r.json()
    assert body["node_errors"]["3"]["errors"][0]["type"] == "exception_during_validation"
    assert body["error"]["details"] == "Exception when validating node: '99'"
    async with http.post(f"{sp.url}/prompt", data=b"{not json") as r:
        assert r.status == 500 and r.headers["Content-Type"].startswith("text/plain")


async def test_interrupt_stops_a_running_sleep_with_progress(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    progress: list[float] = []

    async def interrupt_after_progress(frame: dict[str, Any], pid: str) -> None:
        if frame["type"] == "progress":
            progress.append(frame["data"]["value"])
            assert frame["data"]["max"] == 60 and frame["data"]["node"] == "1"
            if len(progress) == 5:
                async with http.post(f"{sp.url}/interrupt", json={"prompt_id": "someone-else"}) as r:
                    assert r.status == 200
                async with http.post(f"{sp.url}/interrupt", json={"prompt_id": pid}) as r:
                    assert r.status == 200 and await r.read() == b""

    pid, frames = await run_prompt(http, sp.url, sleeper(60), on_frame=interrupt_after_progress)
    assert progress == sorted(progress) and progress[-1] < 60
    tail = [f["type"] for f in frames[-3:]]
    assert tail == ["execution_interrupted", "status", "executing"]
    stopped = next(f for f in frames if f["type"] == "execution_interrupted")["data"]
    assert stopped["node_id"] == "1" and stopped["node_type"] == "StandinSleep"
    async with http.get(f"{sp.url}/history/{pid}") as r:
        status = (await r.json())[pid]["status"]
    assert status["status_str"] == "error" and status["completed"] is False
    assert status["messages"][-1][0] == "execution_interrupted"


async def test_queue_front_delete_and_clear(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    cid = uuid.uuid4().hex
    async with http.ws_connect(f"{sp.url}/ws?clientId={cid}") as ws:
        await ws.receive_json(timeout=10)
        ids = []
        for i, body in enumerate([{"prompt": sleeper(30)}, {"prompt": tiny("a")}, {"prompt": tiny("b"), "front": True}]):
            async with http.post(f"{sp.url}/prompt", json={**body, "client_id": cid}) as r:
                answer = await r.json()
                ids.append(answer["prompt_id"])
                if i == 2:
                    assert answer["number"] < 0
        while True:  # wait until the sleeper runs
            frame = await text_frame(ws, timeout=10)
            if frame["type"] == "executing" and frame["data"]["prompt_id"] == ids[0]:
                break
        async with http.get(f"{sp.url}/prompt") as r:
            assert (await r.json())["exec_info"]["queue_remaining"] == 3
        async with http.post(f"{sp.url}/queue", json={"delete": [ids[0]]}) as r:  # the running one: ignored
            assert r.status == 200
        async with http.get(f"{sp.url}/queue") as r:
            q = await r.json()
        assert [i[1] for i in q["queue_running"]] == [ids[0]]
        assert sorted(i[1] for i in q["queue_pending"]) == sorted(ids[1:])
        async with http.post(f"{sp.url}/queue", json={"clear": True}) as r:
            assert r.status == 200
        async with http.get(f"{sp.url}/queue") as r:
            assert (await r.json())["queue_pending"] == []
        async with http.post(f"{sp.url}/interrupt") as r:
            assert r.status == 200


async def test_upload_then_load_image_inverts_it(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(buf, "PNG")
    form = aiohttp.FormData()
    form.add_field("image", buf.getvalue(), filename="shot.png", content_type="image/png")
    async with http.post(f"{sp.url}/upload/image", data=form) as r:
        uploaded = await r.json()
    assert uploaded == {"name": "shot.png", "subfolder": "", "type": "input"}
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "shot.png"}},
          "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv/shot"}}}
    _, frames = await run_prompt(http, sp.url, wf)
    image = next(f for f in frames if f["type"] == "executed")["data"]["output"]["images"][0]
    assert image["subfolder"] == "inv"
    async with http.get(f"{sp.url}/view", params=image) as r:
        out = Image.open(io.BytesIO(await r.read()))
    assert out.size == (20, 10) and out.getpixel((5, 5)) == (245, 55, 225)


async def test_gpu_flags_and_vram_in_use_while_running(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui", "--gpu-name", "NVIDIA GeForce RTX 4090", "--vram-total", "24", "--vram-free", "20",
                 "--job-vram", "6")
    async with http.get(f"{sp.url}/system_stats") as r:
        dev = (await r.json())["devices"][0]
    assert dev["type"] == "cuda" and dev["index"] == 0 and "RTX 4090" in dev["name"]
    assert dev["vram_total"] == 24 * 1024**3 and dev["vram_free"] == 20 * 1024**3
    during: list[int] = []

    async def sample(frame: dict[str, Any], pid: str) -> None:
        if frame["type"] == "progress" and not during:
            async with http.get(f"{sp.url}/system_stats") as r:
                during.append((await r.json())["devices"][0]["vram_free"])
            async with http.post(f"{sp.url}/interrupt") as r:
                assert r.status == 200

    await run_prompt(http, sp.url, sleeper(30), on_frame=sample)
    assert during and during[0] <= 14 * 1024**3


async def test_killed_standin_restarts_on_the_same_port(standin: Any, http: aiohttp.ClientSession) -> None:
    sp = standin("comfyui")
    sp.kill()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"{sp.url}/system_stats") as r:
            await r.read()
    again = standin("comfyui", port=sp.port)
    async with http.get(f"{again.url}/system_stats") as r:
        assert r.status == 200
