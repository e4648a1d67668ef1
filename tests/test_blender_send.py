"""Send to Blender through the core: the use case, the ``blender.place`` topic and the ``blender.send`` method."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backlot.services.application.errors import Invalid
from backlot.services.application.views import NO_BLENDER
from backlot.services.control import ControlCenter
from backlot.services.models import Job, JobState, OutputFile
from tests.apiclient import running_api

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


async def finished_job(center: ControlCenter, name: str = "shot.png", outside: Path | None = None) -> Job:
    """A succeeded job in the store whose output is in its folder under the outputs (or at ``outside``)."""
    job = Job(id=f"{time.time_ns():012x}"[-12:], task="text_to_image", prompt="a lighthouse at dusk",
              state=JobState.SUCCEEDED, finished_at=time.time())
    path = outside or center.settings.output_path / job.id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    job.outputs = (OutputFile(path.resolve(), "image/png", len(PNG)),)
    await center.store.insert(job)
    return job


async def test_a_send_reaches_each_subscribed_addon_once_and_says_how_many() -> None:
    async with running_api() as api:
        job = await finished_job(api.center)
        addon = await api.client(name="blender")
        assert (await addon.result("events.subscribe", {"topics": ["blender.place"]}))["topics"] == ["blender.place"]
        every = await api.client(name="script")  # every topic: the news, not the opt-in request to place files
        assert "blender.place" not in (await every.result("events.subscribe"))["topics"]
        assert api.center.application.blender_addons() == ("blender",)
        window = await api.client(name="window")
        sent = await window.result("blender.send", {"job": job.seq})
        path = str(api.center.settings.output_path.resolve() / job.id / "shot.png")
        assert sent == {"job": job.id, "seq": job.seq, "path": path, "mime": "image/png", "addons": 1, "sent": True,
                        "message": "Sent to Blender (1 addon)"}
        placed = await addon.notification("blender.place")
        assert placed == {"job_id": job.id, "seq": job.seq, "path": path, "mime": "image/png", "name": "shot.png",
                          "prompt": "a lighthouse at dusk"}
        for c in (addon, every):  # what was pushed before the ping's answer is in the inbox by then: no other
            await c.result("session.ping")
            assert not [m for m in c.inbox if m.get("method") == "blender.place"], c.inbox


async def test_with_no_addon_nothing_is_sent_and_the_answer_says_so() -> None:
    async with running_api() as api:
        job = await finished_job(api.center)
        published: list[object] = []
        api.center.bus.subscribe(published.append)
        c = await api.client()
        sent = await c.result("blender.send", {"job": job.id, "path": str(job.outputs[0].path)})
        assert (sent["addons"], sent["sent"], sent["message"]) == (0, False, NO_BLENDER)
        assert not [e for e in published if getattr(e, "topic", "") == "blender.place"]
        result = await api.center.application.send_to_blender(job.id)
        assert result.sentence.startswith("No Blender is connected")


async def test_only_a_jobs_own_output_inside_the_output_folder_is_sent(tmp_path: Path) -> None:
    async with running_api() as api:
        job = await finished_job(api.center)
        c = await api.client()
        await c.result("events.subscribe", {"topics": ["blender.place"]})
        secret = tmp_path / "secret.png"
        secret.write_bytes(PNG)
        other = api.center.settings.output_path / job.id / "other.png"  # in the folder, but not an output
        other.write_bytes(PNG)
        for path in (str(secret), str(other), "/etc/passwd", f"{job.outputs[0].path.parent}/../../x.png"):
            refused = await c.call("blender.send", {"job": job.id, "path": path})
            assert refused["error"]["code"] == -32602 and "not an output" in refused["error"]["message"], refused
        # a stored job whose output lies outside the outputs (an old record, a moved folder) is refused too
        stray = await finished_job(api.center, outside=tmp_path / "elsewhere" / "x.png")
        refused = await c.call("blender.send", {"job": stray.id})
        assert refused["error"]["code"] == -32602 and "outside Backlot's output folder" in refused["error"]["message"]
        assert (await c.call("blender.send", {"job": 999}))["error"]["code"] == -32003
        with pytest.raises(Invalid):
            await api.center.application.send_to_blender(job.id, secret)
        await c.result("session.ping")
        assert not [m for m in c.inbox if m.get("method") == "blender.place"]  # nothing was published


async def test_a_closed_addon_is_no_longer_counted() -> None:
    async with running_api() as api:
        addon = await api.client(name="blender")
        await addon.result("events.subscribe", {"topics": ["blender.place"]})
        assert len(api.center.application.blender_addons()) == 1
        await addon.close()
        async with asyncio.timeout(10):
            while api.center.application.blender_addons():  # the server sees the end of the stream
                await asyncio.sleep(0.01)
