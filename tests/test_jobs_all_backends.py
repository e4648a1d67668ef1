"""One job of every kind through the JobManager and the adapter registry, on the real stand-ins."""
from __future__ import annotations

import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.models import JobState
from backlot.standins import launcher


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, launcher.StandinProcess]]:
    procs = launcher.start_many(("wan2gp", "rvc", "audioldm", "llm"), speed=20,
                                data_root=tmp_path_factory.mktemp("standins"))
    yield procs
    launcher.stop_all(procs)


@pytest.fixture
async def center(backends: dict[str, launcher.StandinProcess]) -> AsyncIterator[ControlCenter]:
    c = ControlCenter(load_settings(cli={"urls": [p.url for p in backends.values()], "scan_default_ports": False,
                                         "discovery_budget": 2.0}))
    await c.start()
    yield c
    await c.stop()


def tone(path: Path, freq: float = 220.0, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * freq * t) * 12000).astype("<i2").tobytes())
    return path


async def run(center: ControlCenter, task: str, prompt: str, **kw: Any) -> Any:
    job = await center.jobs.submit(task, prompt, **kw)
    done = await center.jobs.wait(job.id, 90)
    assert done.state is JobState.SUCCEEDED, (task, done.status, done.error)
    return done


async def test_text_to_video_goes_to_wan2gp(center: ControlCenter) -> None:
    done = await run(center, "text_to_video", "a lighthouse at dusk", params={"width": 320, "height": 192, "frames": 9,
                                                                             "steps": 2})
    assert done.routed_to.startswith("wan2gp@")
    (out,) = done.outputs
    with av.open(str(out.path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 9


async def test_voice_conversion_goes_to_rvc(center: ControlCenter, tmp_path: Path) -> None:
    done = await run(center, "voice_conversion", "", params={"pitch": 12}, inputs=[str(tone(tmp_path / "line.wav"))])
    assert done.routed_to.startswith("rvc@") and done.outputs[0].mime in ("audio/x-wav", "audio/wav")


async def test_sound_effects_go_to_audioldm(center: ControlCenter) -> None:
    done = await run(center, "sound_effects", "rain on a tin roof", params={"duration": 2.5})
    assert done.routed_to.startswith("audioldm@")
    assert {o.mime for o in done.outputs} >= {"video/mp4"}


async def test_sound_without_a_seed_gets_a_new_one_each_time_and_records_it(center: ControlCenter) -> None:
    """The app's seed box says 45 until changed: Backlot sends a fresh seed for -1 or none, and keeps it."""
    first, second = [await run(center, "sound_effects", "a door creaks", params=p) for p in ({}, {"seed": -1})]
    seeds = [job.params.get("seed") for job in (first, second)]
    assert all(isinstance(s, int) and s >= 0 for s in seeds) and seeds[0] != seeds[1], seeds
    assert f"(seed {seeds[0]})" in first.status.message
    wavs = [next(o.path for o in job.outputs if o.mime.startswith("audio/")).read_bytes() for job in (first, second)]
    assert wavs[0] != wavs[1]
    again = await run(center, "sound_effects", "a door creaks", params=first.params)  # what retry sends
    assert again.params["seed"] == seeds[0]
    assert next(o.path for o in again.outputs if o.mime.startswith("audio/")).read_bytes() == wavs[0]


async def test_text_goes_to_the_llm(center: ControlCenter) -> None:
    done = await run(center, "text", "Describe the opening shot.", params={"seed": 1, "max_tokens": 40})
    assert done.routed_to.startswith("llm@")
    (out,) = done.outputs
    assert out.path.read_text().strip()
