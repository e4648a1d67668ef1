"""Job methods through the socket API against real stand-in backends (ComfyUI, an LLM server)."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.apiclient import running_api

pytestmark = pytest.mark.slow


def _ended(job_id: str) -> Any:
    return lambda p: p["job"]["id"] == job_id and p["job"]["state"] in ("succeeded", "failed", "cancelled")


async def test_a_job_through_the_api_from_submit_to_its_output_bytes(standin: Any) -> None:
    sp = standin("comfyui", speed=5)
    async with running_api(sp.url) as api:
        c = await api.client(name="blender")
        assert (await c.result("events.subscribe", {"topics": ["job.updated"]}))["topics"] == ["job.updated"]
        services = (await c.result("services.list"))["services"]
        assert [s["id"] for s in services] == [f"comfyui@127.0.0.1:{sp.port}"]
        route = await c.result("route.explain", {"task": "text_to_image"})
        assert route["chosen"] == services[0]["id"]
        refused = await c.call("jobs.submit", {"task": "text_to_image", "prompt": "", "params": {"width": 64}})
        assert refused["error"]["code"] == -32602  # the same check as the CLI's: bad input
        assert refused["error"]["message"] == "text_to_image needs a prompt (what to make), and the prompt is empty"
        job = await c.result("jobs.submit", {"task": "text_to_image", "prompt": "a lighthouse",
                                             "params": {"width": 64, "height": 48, "steps": 2}})
        assert job["seq"] == 1 and job["state"] == "queued" and job["client"] == "blender"
        assert job["route"]["chosen"] == services[0]["id"]
        done = (await c.notification("job.updated", _ended(job["id"]), timeout=60))["job"]
        assert done["state"] == "succeeded", done["status"]
        assert (await c.result("jobs.get", {"job": 1}))["id"] == job["id"]  # by number
        assert (await c.result("jobs.get", {"job": job["id"]}))["state"] == "succeeded"
        assert api.center.jobs.known("1") is not None  # a finished job read once is served from memory after
        assert [j["id"] for j in (await c.result("jobs.list", {"state": "succeeded"}))["jobs"]] == [job["id"]]
        listed = await c.result("jobs.outputs", {"job": job["id"]})
        (out,) = listed["outputs"]
        assert out["mime"] == "image/png" and "content" not in out and Path(out["path"]).stat().st_size == out["bytes"]
        full = (await c.result("jobs.outputs", {"job": 1, "content": True}))["outputs"][0]
        data = base64.b64decode(full["content"])
        assert data.startswith(b"\x89PNG") and len(data) == out["bytes"]
        capped = (await c.result("jobs.outputs", {"job": 1, "content": True, "max_bytes": 10}))["outputs"][0]
        assert capped["content"] is None and "max_bytes" in capped["omitted"]
        assert await c.result("jobs.preview", {"job": 1}) is None  # finished: no preview
        health = await c.result("health.snapshot")
        assert services[0]["id"] in health["services"]


async def test_cancel_preview_and_retry_with_the_old_inputs(standin: Any, tmp_path: Path) -> None:
    sp = standin("comfyui", "--preview-method", "none", speed=5)  # the preview here is the one the test writes
    picture = tmp_path / "ref.png"
    Image.new("RGB", (32, 24), (200, 40, 40)).save(picture)
    async with running_api(sp.url) as api:
        c = await api.client()
        await c.result("events.subscribe", {"topics": ["job.updated"]})
        slow = await c.result("jobs.submit", {"task": "text_to_image", "prompt": "storm",
                                              "params": {"workflow": "standin_progress", "seconds": 20}})
        await c.notification("job.updated", lambda p: p["job"]["id"] == slow["id"] and p["job"]["state"] == "running",
                             timeout=60)
        assert await c.result("jobs.preview", {"job": slow["id"]}) is None
        folder = api.center.jobs.output_dir(await api.center.jobs.get(slow["id"]))  # type: ignore[arg-type]
        (folder / "preview.png").write_bytes(picture.read_bytes())
        preview = await c.result("jobs.preview", {"job": slow["seq"]})
        assert preview["mime"] == "image/png" and base64.b64decode(preview["content"]) == picture.read_bytes()
        cancelling = await c.result("jobs.cancel", {"job": slow["id"]})
        assert cancelling["id"] == slow["id"] and cancelling["cancel_requested"]
        ended = (await c.notification("job.updated", _ended(slow["id"]), timeout=60))["job"]
        assert ended["state"] == "cancelled"

        first = await c.result("jobs.submit", {"task": "upscale", "prompt": "sharper", "inputs": [str(picture)]})
        (copied,) = first["inputs"]
        assert Path(copied).parent.parent.name == first["id"]
        picture.unlink()  # the retry must use the copy in the first job's folder, not the original
        again = await c.result("jobs.retry", {"job": first["seq"]})
        assert again["id"] != first["id"] and again["seq"] == first["seq"] + 1
        assert (again["task"], again["prompt"], again["params"]) == (first["task"], first["prompt"], first["params"])
        (recopied,) = again["inputs"]
        assert Path(recopied).parent.parent.name == again["id"]
        assert Path(recopied).read_bytes() == Path(copied).read_bytes()
        prefixed = await c.result("jobs.retry", {"job": first["id"], "params": {"prefix": "again"}})
        assert prefixed["params"] == {**first["params"], "prefix": "again"}  # params laid over the old job's


async def test_llm_complete_runs_a_text_job_and_answers_its_text(standin: Any) -> None:
    sp = standin("llm")
    async with running_api(sp.url) as api:
        c = await api.client()
        reply = await c.result("llm.complete", {"prompt": "Name a colour."}, timeout=60)
        assert isinstance(reply["text"], str) and reply["text"].strip()
        job = await c.result("jobs.get", {"job": reply["job"]})
        assert job["task"] == "text" and job["state"] == "succeeded"
        assert Path(job["outputs"][0]["path"]).read_text(encoding="utf-8") == reply["text"]


async def test_jobs_sent_back_to_back_are_numbered_in_the_order_sent(standin: Any) -> None:
    """Pipelined submits on one connection (Blender's "For Selected") keep the user's order."""
    sp = standin("comfyui", speed=20)
    async with running_api(sp.url) as api:
        c = await api.client()
        prompts = [f"strip {i}" for i in range(12)]
        ids = [await c.send("jobs.submit", {"task": "text_to_image", "prompt": p,
                                            "params": {"workflow": "standin_image"}}) for p in prompts]
        jobs = [(await c.response(rid))["result"] for rid in ids]
    assert [j["prompt"] for j in sorted(jobs, key=lambda j: j["seq"])] == prompts
