"""The Wan2GP adapter against the real server's model records, missing weights, one MCP session, and waits."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from backlot.services.backends.base import FailureCode, StatusCode
from backlot.services.backends.wan2gp.probe import match_webui
from backlot.services.backends.wan2gp.settings import candidates, pick_model, takes_start_image
from tests.helpers import serve
from tests.test_adapter_wan2gp import MakeBackend, collect, job, make, pool  # noqa: F401 (make, pool: fixtures)

IMAGE_KEYS = ("start", "end", "reference", "single_reference", "multiple_references", "background", "injected_frames",
              "control", "mask")


def real_record(model_type: str, name: str, *, start: bool, audio_prompt: bool = False) -> dict[str, Any]:
    """A wangp_list_models record shaped exactly as the real Wan2GP v12.60 sends it (reference/wan2gp-mcp.md)."""
    image = {key: key == "start" and start for key in IMAGE_KEYS}
    return {"model_type": model_type, "family": "wan", "family_label": "Wan2.1", "base_model_type": model_type,
            "finetune": False, "main_output": ["video"], "outputs": ["video"], "inputs": ["text"] + ["image"] * start,
            "media_inputs": {"image": image, "video": {"continue": False, "last": False, "control": False, "mask": False},
                             "audio": {"prompt": audio_prompt, "output": False}},
            "capabilities": {"text_to_video": True, "image_to_video": start, "video_to_video": False,
                             "text_to_image": False, "audio_to_video": audio_prompt},
            "name": name}


def still(tmp_path: Path) -> Path:
    path = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path)
    return path


def test_model_choice_reads_the_real_record() -> None:
    alpha = real_record("alpha", "Alpha 14B", start=False)
    fantasy = real_record("fantasy", "Fantasy Speaking 14B", start=True, audio_prompt=True)
    i2v = real_record("i2v", "Wan2.1 Image2video 480p 14B", start=True)
    assert not takes_start_image(alpha) and takes_start_image(fantasy)
    assert pick_model([alpha, fantasy], "image_to_video") == "fantasy"  # the real keys are image.start, capabilities
    assert pick_model([alpha, fantasy], "text_to_video") == "alpha"
    assert [r["model_type"] for r in candidates([fantasy, alpha, i2v], "image_to_video")] == ["i2v", "fantasy"]
    # capabilities win over media_inputs when both are there
    odd = {**alpha, "capabilities": {"image_to_video": True}}
    assert takes_start_image(odd)


async def test_no_weights_fails_at_once_with_a_sentence(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", "--no-weights", "--offline", speed=20)
    b = make(sp.url)
    started = time.monotonic()
    (st,) = await collect(b.submit(job(tmp_path)))
    assert time.monotonic() - started < 3
    assert st.failure is FailureCode.CAPABILITY and st.failure.backend_side and not st.remote_ref
    assert st.message == (f"no Wan2GP model for text_to_video has its weights on {b.record.id} (checked 2); "
                          "download one in Wan2GP, e.g. Wan2.1 Text2video 1.3B (t2v_1.3B)")
    (st,) = await collect(b.submit(job(tmp_path, task="image_to_video", inputs=[still(tmp_path)])))
    assert st.failure is FailureCode.CAPABILITY and "for image_to_video" in st.message and "(i2v)" in st.message
    # a model named by the job is sent (Wan2GP may download it); offline, the failure says what was missing
    named = await collect(b.submit(job(tmp_path, model_type="t2v", width=64, height=48, frames=5, steps=1)))
    assert named[0].code is StatusCode.QUEUED and "will try to download them" in named[0].message
    assert named[-1].failure is FailureCode.CAPABILITY
    assert named[-1].message.startswith(f"t2v had no weights on {b.record.id} and Wan2GP could not get them: "
                                        "An error happened while trying to locate the file on the Hub")


async def test_models_with_weights_are_preferred(standin: Any, make: MakeBackend, tmp_path: Path) -> None:
    sp = standin("wan2gp", "--weights", "t2v,i2v", "--offline", speed=20)
    b = make(sp.url)
    small = {"width": 64, "height": 48, "frames": 5, "steps": 1}
    t2v = await collect(b.submit(job(tmp_path / "t", **small)))
    assert t2v[0].detail["model_type"] == "t2v" and t2v[-1].code is StatusCode.SUCCEEDED, t2v[-1]  # not t2v_1.3B
    i2v = await collect(b.submit(job(tmp_path / "i", task="image_to_video", inputs=[still(tmp_path)], **small)))
    assert i2v[0].detail["model_type"] == "i2v" and i2v[-1].code is StatusCode.SUCCEEDED, i2v[-1]


class CountingProxy:
    """A real HTTP proxy in front of the stand-in counting JSON-RPC methods; it can fail the next tool call."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.methods: Counter[str] = Counter()
        self.fail_calls = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        method = json.loads(body).get("method", "") if request.method == "POST" and body else ""
        self.methods[method] += 1
        if method == "tools/call" and self.fail_calls:
            self.fail_calls -= 1
            return web.Response(status=502, text="bad gateway")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "content-type")}
        async with aiohttp.ClientSession() as client:
            async with client.request(request.method, self.target + request.path_qs, data=body or None,
                                      headers=headers) as reply:
                data = await reply.read()
                return web.Response(status=reply.status, body=data,
                                    content_type=reply.content_type if data else None)


async def test_one_mcp_session_per_service_reinitialized_after_a_failure(standin: Any, make: MakeBackend,
                                                                        tmp_path: Path) -> None:
    sp = standin("wan2gp", speed=2)
    proxy = CountingProxy(sp.url)
    async with serve({"/{tail:.*}": proxy.handle}) as url:
        b = make(url, unreachable_grace=10.0)
        first = await collect(b.submit(job(tmp_path / "1", width=320, height=192, frames=9, steps=20)))
        assert first[-1].code is StatusCode.SUCCEEDED, first[-1]
        assert proxy.methods["tools/call"] > 10  # model list, availability, generate, many polls, download link
        assert proxy.methods["initialize"] == 1 and b.mcp.sessions_opened == 1, proxy.methods
        run = b.submit(job(tmp_path / "2", width=64, height=48, frames=5, steps=1))
        assert (await run.__anext__()).code is StatusCode.QUEUED
        proxy.fail_calls = 1  # the next poll fails: that session is dropped, the retry initializes a new one
        second = await collect(run)
        assert second[-1].code is StatusCode.SUCCEEDED, second[-1]
        assert proxy.methods["initialize"] == 2, proxy.methods


async def test_the_unreachable_grace_runs_on_the_injected_clock(standin: Any, make: MakeBackend,
                                                                 tmp_path: Path) -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    sp = standin("wan2gp", speed=10)
    b = make(sp.url, unreachable_grace=600.0, clock=lambda: now[0], sleep=sleep)
    run = b.submit(job(tmp_path, width=1280, height=720, frames=81, steps=200))  # ~25 s if left alone
    assert (await run.__anext__()).code is StatusCode.QUEUED
    await asyncio.to_thread(sp.stop)
    started = time.monotonic()
    rest = await asyncio.wait_for(collect(run), 30)
    assert time.monotonic() - started < 15  # ten minutes of grace, waited on the fake clock
    assert rest[-1].failure is FailureCode.UNREACHABLE, rest[-1]
    assert rest[-1].message.startswith(f"lost contact with {b.record.id} for 60") and sum(slept) >= 600, slept
    assert max(slept) <= 5.0  # the backoff between polls is capped


def test_webui_version_is_wan2gps_not_gradios() -> None:
    header = ('<div align=center><H1>Wan<SUP style="color: #2563eb;">GP</SUP> v12.60 <FONT SIZE=4>by '
              '<I>DeepBeepMeep</I></FONT> <FONT SIZE=3>')
    config = {"title": "WanGP", "version": "5.29.0", "mode": "blocks",
              "components": [{"id": 1, "type": "markdown", "props": {"value": header}}]}
    identity = match_webui(config)
    assert identity is not None and identity.version == "12.60" and identity.details["gradio"] == "5.29.0"
    bare = match_webui({**config, "components": []})
    assert bare is not None and bare.version == ""  # never Gradio's version in its place


async def test_webui_standin_shows_the_real_header(standin: Any) -> None:
    sp = standin("wan2gp-webui", speed=10)
    async with aiohttp.ClientSession() as client, client.get(sp.url + "/config") as reply:
        config = await reply.json()
    identity = match_webui(config)
    assert identity is not None and identity.version == "12.60", identity


def test_the_mcp_sdk_is_not_imported_with_the_adapter() -> None:
    # importing the SDK takes ~0.25 s; on the event loop that stalls every job: it is loaded on a thread instead
    code = "import sys, services.backends.wan2gp.adapter; print('mcp' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["False", "False"], out
