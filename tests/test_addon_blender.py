"""The addon inside real Blender (Debian's ``blender``) against a running ``backlot --headless`` with stand-ins.

One instance serves the module: the ComfyUI, Wan2GP and AudioLDM stand-ins as real processes, and
``main.py --headless`` in its own BACKLOT_HOME on a free API port. Each test runs
``blender_scripts/addon_flow.py`` in a fresh Blender that installs the zip, connects and generates.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import av
import pytest
from addon_fake_api import Endpoint, FakeBacklot, fake_backlot  # noqa: F401

from blender_addon.client import ApiClient, Notification
from blender_addon.package import build_zip
from standins import launcher

ROOT = Path(__file__).resolve().parent.parent
BLENDER = shutil.which("blender")
XVFB = shutil.which("xvfb-run")
SCRIPT = Path(__file__).parent / "blender_scripts" / "addon_flow.py"
FPS = 24  # the scene's frame rate in generate mode
KINDS = ("comfyui", "wan2gp", "audioldm")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")
pytestmark = pytest.mark.skipif(BLENDER is None, reason="Blender is not installed (`apt-get install blender`, "
                                                        "or `make test`, which installs it)")

Runner = Callable[..., dict[str, Any]]


class RealBacklot(NamedTuple):
    """A running ``backlot --headless``: its API endpoint, home and the stand-ins it serves."""

    api: Endpoint
    home: Path
    standins: dict[str, launcher.StandinProcess]

    def client(self) -> ApiClient:
        """A connected client that receives ``job.updated``."""
        return ApiClient(self.api.host, self.api.port, token=self.api.token, topics=["job.updated"]).connect(timeout=10)


def _instance_env(home: Path, urls: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLOT_") or k == "BACKLOT_GRADIO3_PYTHON"}
    return {**env, "BACKLOT_HOME": str(home), "BACKLOT_URLS": ",".join(urls), "BACKLOT_SCAN_DEFAULT_PORTS": "false",
            "BACKLOT_API_PORT": "0", "PYTHONUNBUFFERED": "1"}


def _wait_serving(proc: subprocess.Popen[bytes], home: Path, log: Path, timeout: float = 90) -> dict[str, Any]:
    """instance.json once the instance's API listens (it writes the file then; nothing to wait on instead)."""
    info_path = home / "data" / "instance.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"backlot --headless exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if info.get("pid") == proc.pid:
            return info
        time.sleep(0.1)
    pytest.fail(f"backlot --headless did not serve within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def real_backlot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBacklot]:
    """The stand-ins (fast) and ``backlot --headless`` serving them; SIGTERMed after the module's tests."""
    root = tmp_path_factory.mktemp("real-backlot")
    procs = launcher.start_many(KINDS, speed=10, data_root=root / "standins")
    home, log = root / "home", root / "backlot.log"
    home.mkdir()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--headless"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                env=_instance_env(home, [p.url for p in procs.values()]))
    try:
        info = _wait_serving(proc, home, log)
        token = (home / "config" / "api-token").read_text(encoding="utf-8").strip()
        yield RealBacklot(Endpoint(str(info["api_host"]), int(info["api_port"]), token), home, procs)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            launcher.stop_all(procs)


@pytest.fixture
def backlot(real_backlot: RealBacklot) -> Iterator[RealBacklot]:
    """The module's instance; jobs a test leaves running are cancelled, so the next test finds the backends idle."""
    yield real_backlot
    with real_backlot.client() as c:
        for job in c.call("jobs.list", {"limit": 1000})["jobs"]:
            if job["state"] not in TERMINAL:
                c.call("jobs.cancel", {"job": job["id"]})


def _runner(api: Endpoint, tmp_path: Path) -> Runner:
    zip_path = build_zip(tmp_path / "backlot_addon.zip")

    def run(mode: str, windowed: bool = False, timeout: float = 120, **env_extra: Any) -> dict[str, Any]:
        result = tmp_path / f"{mode}.json"
        env = {**os.environ, "BACKLOT_TEST_MODE": mode, "BACKLOT_TEST_ZIP": str(zip_path),
               "BACKLOT_TEST_HOST": api.host, "BACKLOT_TEST_PORT": str(api.port),
               "BACKLOT_TEST_TOKEN": api.token, "BACKLOT_TEST_BLEND": str(tmp_path / "shot.blend"),
               "BACKLOT_TEST_RESULT": str(result), "BLENDER_USER_SCRIPTS": str(tmp_path / "user-scripts"),
               "BLENDER_USER_CONFIG": str(tmp_path / "user-config"),
               **{f"BACKLOT_TEST_{k.upper()}": json.dumps(v) for k, v in env_extra.items()}}
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


@pytest.fixture
def blender(backlot: RealBacklot, tmp_path: Path) -> Runner:
    """Run addon_flow.py in a fresh Blender in one mode against the real instance; returns its result JSON."""
    return _runner(backlot.api, tmp_path)


def _by_type(strips: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in strips:
        out.setdefault(s["type"], []).append(s)
    return out


def _seconds(path: str, kind: str) -> float:
    """How long the first ``kind`` (video or audio) stream of a media file lasts."""
    with av.open(path) as container:
        stream = next(s for s in container.streams if s.type == kind)
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


def _has_audio(path: str) -> bool:
    with av.open(path) as container:
        return any(s.type == "audio" for s in container.streams)


def _output(job: dict[str, Any], mime_major: str) -> str:
    return next(o["path"] for o in job["outputs"] if o["mime"].startswith(mime_major + "/"))


def test_generate_places_placeholder_then_result(blender: Runner, backlot: RealBacklot) -> None:
    cases = [{"prompt": "a red fox running", "task": "text_to_video", "frame": 10},
             {"prompt": "a lighthouse at dusk", "task": "text_to_image", "frame": 100},
             {"prompt": "rain on a tin roof", "task": "sound_effects", "frame": 200}]
    r = blender("generate", cases=cases, form={"text_to_video__frames": 33, "text_to_video__resolution": "320x192",
                                               "sound_effects__duration": 2.5})
    assert r["services"] == sorted(f"{kind}@127.0.0.1:{backlot.standins[kind].port}" for kind in KINDS)
    # at once: one colour strip per job at its frame, sized from the form (33 frames; image 2 s; 2.5 s at 24 fps)
    assert [(p["type"], p["start"], p["channel"], p["length"]) for p in r["placeholders"]] == [
        ("COLOR", 10, 1, 33), ("COLOR", 100, 1, 48), ("COLOR", 200, 1, 60)]
    assert r["generate_ms"] < 50  # the operator never waits for Backlot
    with backlot.client() as c:
        jobs = {p: c.call("jobs.get", {"job": job_id}) for p, job_id in r["jobs"].items()}
    assert {p: j["state"] for p, j in jobs.items()} == dict.fromkeys(jobs, "succeeded"), r["messages"]
    assert {p: (name, seq) for p, (name, seq) in r["accepted"].items()} == {
        p: (f"job #{j['seq']}", j["seq"]) for p, j in jobs.items()}  # placeholders named after Backlot's job numbers
    assert jobs["a red fox running"]["routed_to"].startswith("wan2gp@")
    assert jobs["a lighthouse at dusk"]["routed_to"].startswith("comfyui@")
    assert jobs["rain on a tin roof"]["routed_to"].startswith("audioldm@")
    strips = _by_type(r["strips"])
    assert "COLOR" not in strips  # every placeholder was replaced
    # text_to_video: Wan2GP's clip (33 frames at its 16 fps) as a movie strip as long as the clip at the scene's
    # 24 fps; Wan 2.1 renders no sound, so no sound strip
    clip = _output(jobs["a red fox running"], "video")
    assert not _has_audio(clip)
    movie, = strips["MOVIE"]
    assert (movie["name"], movie["start"], movie["channel"]) == ("a red fox running", 10, 1)
    assert round(_seconds(clip, "video") * 16) == 33 and abs(movie["length"] - _seconds(clip, "video") * FPS) <= 1
    assert not [s for s in strips["SOUND"] if s["start"] == 10], r["strips"]
    image, = strips["IMAGE"]  # ComfyUI's PNG holds the placeholder's length
    assert (image["name"], image["start"], image["length"]) == ("a lighthouse at dusk", 100, 48)
    assert _output(jobs["a lighthouse at dusk"], "image").endswith(".png")
    audio, = strips["SOUND"]  # AudioLDM's WAV, as long as the real file at the scene's 24 fps
    wav = _output(jobs["rain on a tin roof"], "audio")
    assert (audio["name"], audio["start"]) == ("rain on a tin roof", 200)
    assert abs(audio["length"] - _seconds(wav, "audio") * FPS) <= 1
    for s in r["strips"]:
        assert s["job"] == r["jobs"][s["name"].split(".")[0]]  # job id in the strip's custom properties
    assert {j["job"] for j in r["scene_jobs"]} == set(r["jobs"].values())  # saved in the scene


def test_video_with_sound_lands_as_movie_and_sound(fake_backlot: FakeBacklot, tmp_path: Path) -> None:
    """No stand-in renders a clip with a sound track (Wan 2.1 and ComfyUI's video are silent): the test double does."""
    run = _runner(Endpoint("127.0.0.1", fake_backlot.port, fake_backlot.token), tmp_path)
    r = run("generate", cases=[{"prompt": "a red fox running", "task": "text_to_video", "frame": 10}],
            form={"text_to_video__frames": 30})
    strips = _by_type(r["strips"])
    movie, = strips["MOVIE"]
    sound, = strips["SOUND"]
    assert (movie["name"], movie["start"], movie["channel"], movie["length"]) == ("a red fox running", 10, 1, 30)
    assert (sound["start"], sound["channel"]) == (10, 2) and abs(sound["length"] - 30) <= 1


def test_generate_for_selected_text_strips(blender: Runner, backlot: RealBacklot) -> None:
    r = blender("batch")
    assert [(p["start"], p["channel"]) for p in r["placeholders"]] == [(1, 2), (50, 2)]
    assert [(s["type"], s["name"], s["start"], s["channel"]) for s in r["strips"]] == [
        ("IMAGE", "a storm over the sea", 1, 2), ("IMAGE", "a quiet harbour at dawn", 50, 2)]
    with backlot.client() as c:
        listed = c.call("jobs.list", {"task": "text_to_image", "limit": 1000})["jobs"]
    mine = [j for j in listed if j["prompt"] in r["jobs"]]
    assert sorted((j["prompt"], j["id"], j["state"]) for j in mine) == sorted(
        (p, job_id, "succeeded") for p, job_id in r["jobs"].items())  # one job per strip, each run once


def _wait_finished(c: ApiClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it is terminal, from ``jobs.get`` or the ``job.updated`` notifications after it."""
    job: dict[str, Any] = c.call("jobs.get", {"job": job_id})
    deadline = time.monotonic() + timeout
    while job["state"] not in TERMINAL:
        msg = c.next_message(max(0.1, deadline - time.monotonic()))
        assert msg is not None, f"job {job_id} did not finish within {timeout:.0f} s"
        if isinstance(msg, Notification) and msg.params["job"]["id"] == job_id:
            job = msg.params["job"]
    return job


def test_reopened_file_imports_finished_and_follows_running_jobs(blender: Runner, backlot: RealBacklot) -> None:
    long_take = {"workflow": "standin_progress", "seconds": 600}  # 60 s on the stand-in at --speed 10: cancelled
    short_take = {"workflow": "standin_progress", "seconds": 80}  # 8 s: finishes after Blender quit
    saved = blender("save", cases=[
        {"prompt": "finished while closed", "task": "text_to_image", "frame": 5, "params": short_take},
        {"prompt": "still running", "task": "text_to_image", "frame": 60, "params": long_take}])
    closed_at = time.time()
    done_id, running_id = saved["jobs"]["finished while closed"], saved["jobs"]["still running"]
    with backlot.client() as c:
        done = _wait_finished(c, done_id)
        assert c.call("jobs.get", {"job": running_id})["state"] == "running"
    assert done["state"] == "succeeded" and done["finished_at"] > closed_at  # while no Blender was open
    r = blender("reopen")
    assert r["loaded"] == ["finished while closed", "still running"]
    assert r["loaded_states"] == saved["states"]  # as saved: both unfinished
    after = _by_type(r["after_open"])
    image, = after["IMAGE"]
    assert (image["name"], image["start"], image["job"]) == ("finished while closed", 5, done_id)
    assert image["length"] == 80 * 24  # the placeholder's length: ``seconds`` at the file's 24 fps
    placeholder, = after["COLOR"]
    assert placeholder["start"] == 60 and placeholder["job"] == running_id
    assert 0 < r["following"] < 1  # progress of the running job reached the reopened file
    assert "COLOR" not in _by_type(r["after_cancel"])  # cancelled: the placeholder goes
    with backlot.client() as c:
        assert c.call("jobs.get", {"job": running_id})["state"] == "cancelled"
    with urllib.request.urlopen(backlot.standins["comfyui"].url + "/queue", timeout=10) as resp:
        queue = json.load(resp)
    assert queue["queue_running"] == [] and queue["queue_pending"] == []  # stopped on ComfyUI too


@pytest.mark.skipif(XVFB is None, reason="xvfb-run is not installed")
@pytest.mark.slow
def test_real_timers_under_xvfb(blender: Runner) -> None:
    r = blender("timers", windowed=True, timeout=240)
    image, = [s for s in r["strips"] if s["type"] == "IMAGE"]
    assert (image["name"], image["start"]) == ("timer driven", 7)
    # only Blender's own bpy.app.timers ticked the addon in this mode (the script never calls tick itself)
    assert r["ticks"] >= 1


def test_workflow_picker_runs_a_user_workflow_and_a_workflow_file(blender: Runner, backlot: RealBacklot,
                                                                  tmp_path: Path) -> None:
    """A workflow in the home's workflows folder shows in the panel's picker; it and a file picked by path both run."""
    built_in = ROOT / "resources" / "workflows"
    user = backlot.home / "config" / "workflows"  # user_folders(): <config dir>/workflows
    user.mkdir(parents=True, exist_ok=True)
    shutil.copy(built_in / "standin_progress.json", user / "my_slow_flow.json")
    shutil.copy(built_in / "standin_progress.bindings.json", user / "my_slow_flow.bindings.json")
    elsewhere = tmp_path / "flows"
    elsewhere.mkdir()
    shutil.copy(built_in / "standin_image.json", elsewhere / "solid.json")
    shutil.copy(built_in / "standin_image.bindings.json", elsewhere / "solid.bindings.json")
    r = blender("workflow", pick="my_slow_flow", file=str(elsewhere / "solid.json"))
    assert r["items"][0] == "_default" and "my_slow_flow" in r["items"] and "standin_image" in r["items"]
    assert "upscale" not in r["items"]  # only the workflows serving the task picked
    # what the panel draws: the picker with its refresh button, the file, the picked workflow's own parameter
    picked_rows = r["drawn_picked"]
    for row in (["prop", "backlot_workflow"], ["operator", "backlot.refresh_workflows"],
                ["prop", "backlot_workflow_file"], ["prop", "text_to_image__wf__seconds"]):
        assert row in picked_rows, (row, picked_rows)
    assert ["prop", "backlot_workflow_file"] in r["drawn_file"]
    assert ["prop", "text_to_image__wf__seconds"] not in r["drawn_file"]  # a file's own parameters go in Extra
    assert ["prop", "backlot_workflow"] not in r["drawn_other"] and ["prop", "backlot_task"] in r["drawn_other"]
    # the picked workflow's own ``seconds`` (3) sized its placeholder: 3 s at 24 fps
    assert [(p["start"], p["length"]) for p in r["placeholders"]] == [(10, 72), (200, 48)]
    with backlot.client() as c:
        jobs = {p: c.call("jobs.get", {"job": job_id}) for p, job_id in r["jobs"].items()}
    assert {p: j["state"] for p, j in jobs.items()} == dict.fromkeys(jobs, "succeeded"), r["messages"]
    picked, by_file = jobs["picked workflow"], jobs["workflow file"]
    assert (picked["params"]["workflow"], picked["params"]["seconds"]) == ("my_slow_flow", 3)
    assert by_file["params"]["workflow"] == str(elsewhere / "solid.json")
    assert picked["routed_to"].startswith("comfyui@") and by_file["routed_to"].startswith("comfyui@")
    images = [(s["name"], s["start"]) for s in r["strips"] if s["type"] == "IMAGE"]
    assert images == [("picked workflow", 10), ("workflow file", 200)]
