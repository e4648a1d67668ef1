"""The addon inside real Blender (Debian's ``blender``): install the zip, connect, generate, check the timeline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from addon_fake_api import Endpoint, FakeBacklot, backlot_api, fake_backlot  # noqa: F401
from blender_addon.client import ApiClient, Notification
from blender_addon.package import build_zip

BLENDER = shutil.which("blender")
XVFB = shutil.which("xvfb-run")
SCRIPT = Path(__file__).parent / "blender_scripts" / "addon_flow.py"
pytestmark = pytest.mark.skipif(BLENDER is None, reason="Blender is not installed (`apt-get install blender`, "
                                                        "or `make test`, which installs it)")

Runner = Callable[..., dict[str, Any]]


@pytest.fixture
def blender(backlot_api: Endpoint, tmp_path: Path) -> Runner:
    """Run addon_flow.py in a fresh Blender in one mode against the API; returns its result JSON."""
    zip_path = build_zip(tmp_path / "backlot_addon.zip")

    def run(mode: str, windowed: bool = False, timeout: float = 120) -> dict[str, Any]:
        result = tmp_path / f"{mode}.json"
        env = {**os.environ, "BACKLOT_TEST_MODE": mode, "BACKLOT_TEST_ZIP": str(zip_path),
               "BACKLOT_TEST_HOST": backlot_api.host, "BACKLOT_TEST_PORT": str(backlot_api.port),
               "BACKLOT_TEST_TOKEN": backlot_api.token, "BACKLOT_TEST_BLEND": str(tmp_path / "shot.blend"),
               "BACKLOT_TEST_RESULT": str(result), "BLENDER_USER_SCRIPTS": str(tmp_path / "user-scripts"),
               "BLENDER_USER_CONFIG": str(tmp_path / "user-config")}
        cmd = [BLENDER, "--factory-startup", "--python-exit-code", "1", "--python", str(SCRIPT)]
        if windowed:
            cmd = [XVFB, "-a", "-s", "-screen 0 1280x1024x24", *cmd]
        else:
            cmd.insert(1, "-b")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        data = json.loads(result.read_text()) if result.exists() else {}
        assert proc.returncode == 0 and "error" not in data, (
            f"blender exited {proc.returncode}: {data.get('error')}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return data

    return run


def _by_type(strips: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in strips:
        out.setdefault(s["type"], []).append(s)
    return out


def test_generate_places_placeholder_then_result(blender: Runner) -> None:
    r = blender("generate")
    assert r["services"] == ["audioldm@127.0.0.1:7863", "comfyui@127.0.0.1:8188", "wan2gp@127.0.0.1:8000"]
    # at once: one colour strip per job at its frame, sized from the task's parameters (30 frames; 2 s; 1.5 s)
    assert [(p["type"], p["start"], p["channel"], p["length"]) for p in r["placeholders"]] == [
        ("COLOR", 10, 1, 30), ("COLOR", 100, 1, 48), ("COLOR", 200, 1, 36)]
    assert r["generate_ms"] < 50  # the operator never waits for Backlot
    assert r["accepted_names"] == ["job #1", "job #2", "job #3"]
    strips = _by_type(r["strips"])
    assert "COLOR" not in strips  # every placeholder was replaced
    movie, = strips["MOVIE"]
    assert (movie["name"], movie["start"], movie["channel"], movie["length"]) == ("a red fox running", 10, 1, 30)
    video_sound = next(s for s in strips["SOUND"] if s["start"] == 10)
    assert video_sound["channel"] == 2 and abs(video_sound["length"] - 30) <= 1
    image, = strips["IMAGE"]
    assert (image["name"], image["start"], image["length"]) == ("a lighthouse at dusk", 100, 48)
    audio = next(s for s in strips["SOUND"] if s["start"] == 200)
    assert audio["name"] == "rain on a tin roof" and audio["length"] == 36
    for s in r["strips"]:
        assert s["job"] == r["jobs"][s["name"].split(".")[0]]  # job id in the strip's custom properties
    assert {j["job"] for j in r["scene_jobs"]} == set(r["jobs"].values())  # saved in the scene


def test_generate_for_selected_text_strips(blender: Runner, fake_backlot: FakeBacklot) -> None:
    r = blender("batch")
    assert [(p["start"], p["channel"]) for p in r["placeholders"]] == [(1, 2), (50, 2)]
    assert [(s["type"], s["name"], s["start"]) for s in r["strips"]] == [
        ("IMAGE", "a storm over the sea", 1), ("IMAGE", "a quiet harbour at dawn", 50)]
    prompts = sorted(p["prompt"] for m, p in fake_backlot.calls if m == "jobs.submit")
    assert prompts == ["a quiet harbour at dawn", "a storm over the sea"]  # one job per strip


def test_reopened_file_imports_finished_and_follows_running_jobs(
        blender: Runner, fake_backlot: FakeBacklot, backlot_api: Endpoint) -> None:
    fake_backlot.hold("*")
    saved = blender("save")
    done_id = saved["jobs"]["finished while closed"]
    with ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token, topics=["job.updated"]).connect() as c:
        fake_backlot.release("*")
        fake_backlot.hold("still running")
        while True:  # wait for the job to finish while no Blender is open
            msg = c.next_message(30)
            assert msg is not None, "the held job never finished"
            if isinstance(msg, Notification) and msg.params["job"]["id"] == done_id and msg.params["job"]["state"] == "succeeded":
                break
    r = blender("reopen")
    assert r["loaded"] == ["finished while closed", "still running"]
    after = _by_type(r["after_open"])
    image, = after["IMAGE"]
    assert (image["name"], image["start"], image["job"]) == ("finished while closed", 5, done_id)
    placeholder, = after["COLOR"]
    assert placeholder["start"] == 60 and placeholder["job"] == saved["jobs"]["still running"]
    assert "COLOR" not in _by_type(r["after_cancel"])  # cancelled: the placeholder goes
    assert fake_backlot.jobs[saved["jobs"]["still running"]]["state"] == "cancelled"


@pytest.mark.skipif(XVFB is None, reason="xvfb-run is not installed")
@pytest.mark.slow
def test_real_timers_under_xvfb(blender: Runner) -> None:
    r = blender("timers", windowed=True, timeout=240)
    image, = [s for s in r["strips"] if s["type"] == "IMAGE"]
    assert (image["name"], image["start"]) == ("timer driven", 7)
    assert r["ticks"] >= 2  # only Blender's own timer ticks the addon in this mode (the script never pumps)
