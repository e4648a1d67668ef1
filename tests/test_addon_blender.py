"""The addon inside real Blender, in every release we support, against a running ``backlot --headless``.

Each test runs once per Blender (tests/blender_hosts.py): Debian's ``blender`` 3.4 and PyPI's ``bpy``
4.2 LTS, 4.5 LTS and 5.0, which ``make test`` installs, each in its own venv. A test's id names the
release (``[blender-5.0.1]``), and so does its failure message.

One instance serves the module: the ComfyUI, Wan2GP and AudioLDM stand-ins as real processes, and
``main.py --headless`` in its own BACKLOT_HOME on a free API port. Each test runs
``blender_scripts/addon_flow.py`` in a fresh Blender that installs the zip, connects and generates.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import av
import pytest
from addon_fake_api import Endpoint, FakeBacklot, fake_backlot, frame_index  # noqa: F401
from blender_hosts import BlenderHost, hosts, required_bpy

from backlot.blender_addon.client import ApiClient, Notification
from backlot.blender_addon.package import build_zip
from backlot.standins import launcher

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).parent / "blender_scripts" / "addon_flow.py"
FPS = 24  # the scene's frame rate in generate mode
KINDS = ("comfyui", "wan2gp", "audioldm")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")
HOSTS = hosts()
pytestmark = pytest.mark.skipif(not HOSTS, reason="no Blender is installed (`make test` installs Debian's blender "
                                                  "and PyPI's bpy 4.2, 4.5 and 5.0)")

Runner = Callable[..., dict[str, Any]]


class RealBacklot(NamedTuple):
    """A running ``backlot --headless``: its API endpoint, home and the stand-ins it serves."""

    api: Endpoint
    home: Path
    standins: dict[str, launcher.StandinProcess]

    def client(self) -> ApiClient:
        """A connected client that receives ``job.updated``."""
        return ApiClient(self.api.host, self.api.port, token=self.api.token, topics=["job.updated"]).connect(timeout=10)


def _instance_env(home: Path, urls: list[str], port: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLOT_") or k == "BACKLOT_GRADIO3_PYTHON"}
    return {**env, "BACKLOT_HOME": str(home), "BACKLOT_URLS": ",".join(urls), "BACKLOT_SCAN_DEFAULT_PORTS": "false",
            "BACKLOT_API_PORT": str(port), "PYTHONUNBUFFERED": "1"}


def _start_instance(root: Path, home: Path, log: Path, urls: list[str], port: int = 0) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--headless"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd=root, env=_instance_env(home, urls, port))


def _stop_instance(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and the instance must exit 0 within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
    proc = _start_instance(root, home, log, [p.url for p in procs.values()])
    try:
        info = _wait_serving(proc, home, log)
        token = (home / "config" / "api-token").read_text(encoding="utf-8").strip()
        yield RealBacklot(Endpoint(str(info["api_host"]), int(info["api_port"]), token), home, procs)
    finally:
        try:
            _stop_instance(proc, log)
        finally:
            launcher.stop_all(procs)


@pytest.fixture
def backlot(real_backlot: RealBacklot) -> Iterator[RealBacklot]:
    """The module's instance; jobs a test leaves running are cancelled, so the next test finds the backends idle."""
    yield real_backlot
    with real_backlot.client() as c:
        for job in c.call("jobs.list", {"limit": 1000})["jobs"]:
            if job["state"] not in TERMINAL:
                c.call("jobs.cancel", {"job": job["id"]})


@pytest.fixture(params=HOSTS, ids=lambda h: h.id)
def host(request: pytest.FixtureRequest) -> BlenderHost:
    """Each Blender in turn; one that ``make test`` installed but cannot start fails, naming its release."""
    h: BlenderHost = request.param
    if not Path(h.executable).exists():
        pytest.fail(f"{h.id}: {h.executable} is missing (`make blenders` installs it)")
    return h


def test_every_required_release_is_tested() -> None:
    """``make test`` names the bpy releases it installed; each one is among the hosts the tests run in."""
    assert set(required_bpy()) <= {h.version for h in HOSTS}


def _blender_env(api: Endpoint, tmp_path: Path, mode: str, zip_path: Path, **env_extra: Any) -> dict[str, str]:
    """What addon_flow.py reads: the mode, the zip, the API, and user folders of its own in ``tmp_path``."""
    return {**os.environ, "BACKLOT_TEST_MODE": mode, "BACKLOT_TEST_ZIP": str(zip_path),
            "BACKLOT_TEST_HOST": api.host, "BACKLOT_TEST_PORT": str(api.port),
            "BACKLOT_TEST_TOKEN": api.token, "BACKLOT_TEST_BLEND": str(tmp_path / "shot.blend"),
            "BACKLOT_TEST_RESULT": str(tmp_path / f"{mode}.json"),
            "BLENDER_USER_SCRIPTS": str(tmp_path / "user-scripts"), "BLENDER_USER_CONFIG": str(tmp_path / "user-config"),
            "BLENDER_USER_EXTENSIONS": str(tmp_path / "user-extensions"),
            **{f"BACKLOT_TEST_{k.upper()}": v if k == "signal" else json.dumps(v) for k, v in env_extra.items()}}


def _result(host: BlenderHost, mode: str, tmp_path: Path, returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The script's result JSON; a failure names the Blender release."""
    result = tmp_path / f"{mode}.json"
    data = json.loads(result.read_text()) if result.exists() else {}
    assert returncode == 0 and "error" not in data, (
        f"{host.id}: {mode} exited {returncode}: {data.get('error')}\n{stdout[-4000:]}\n{stderr[-2000:]}")
    assert data["blender"].startswith(host.version), (host.id, data["blender"])
    return data


def _runner(host: BlenderHost, api: Endpoint, tmp_path: Path) -> Runner:
    zip_path = build_zip(tmp_path / "backlot_addon.zip")

    def run(mode: str, windowed: bool = False, timeout: float = 180, **env_extra: Any) -> dict[str, Any]:
        proc = subprocess.run(host.command(SCRIPT, windowed), env=_blender_env(api, tmp_path, mode, zip_path,
                                                                                **env_extra),
                              capture_output=True, text=True, timeout=timeout)
        return _result(host, mode, tmp_path, proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def blender(host: BlenderHost, backlot: RealBacklot, tmp_path: Path) -> Runner:
    """Run addon_flow.py in a fresh Blender in one mode against the real instance; returns its result JSON."""
    return _runner(host, backlot.api, tmp_path)


@pytest.fixture
def blender_fake(host: BlenderHost, fake_backlot: FakeBacklot, tmp_path: Path) -> Runner:  # noqa: F811
    """The same against the test double (clips with sound, at a chosen frame rate)."""
    return _runner(host, Endpoint("127.0.0.1", fake_backlot.port, fake_backlot.token), tmp_path)


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
             {"prompt": "a lighthouse at dusk", "task": "text_to_image", "frame": 100}]
    r = blender("generate", cases=cases, form={"text_to_video__frames": 33, "text_to_video__resolution": "320x192"})
    assert r["services"] == sorted(f"{kind}@127.0.0.1:{backlot.standins[kind].port}" for kind in KINDS)
    # at once: one colour strip per job at its frame, sized from the form (33 frames; image 2 s at 24 fps)
    assert [(p["type"], p["start"], p["channel"], p["length"]) for p in r["placeholders"]] == [
        ("COLOR", 10, 1, 33), ("COLOR", 100, 1, 48)]
    assert r["generate_ms"] < 50  # the operator never waits for Backlot
    with backlot.client() as c:
        jobs = {p: c.call("jobs.get", {"job": job_id}) for p, job_id in r["jobs"].items()}
    assert {p: j["state"] for p, j in jobs.items()} == dict.fromkeys(jobs, "succeeded"), r["messages"]
    assert {p: (name, seq) for p, (name, seq) in r["accepted"].items()} == {
        p: (f"job #{j['seq']}", j["seq"]) for p, j in jobs.items()}  # placeholders named after Backlot's job numbers
    assert jobs["a red fox running"]["routed_to"].startswith("wan2gp@")
    assert jobs["a lighthouse at dusk"]["routed_to"].startswith("comfyui@")
    strips = _by_type(r["strips"])
    assert "COLOR" not in strips and not r["import_failed"]  # every placeholder was replaced
    # text_to_video: Wan2GP's clip (33 frames at its 16 fps) as a movie strip as long as the clip at the scene's
    # 24 fps, stretched by a Speed Control strip above it; Wan 2.1 renders no sound, so no sound strip
    clip = _output(jobs["a red fox running"], "video")
    assert not _has_audio(clip)
    movie, = strips["MOVIE"]
    speed, = strips["SPEED"]
    assert (movie["name"], movie["start"], movie["channel"]) == ("a red fox running", 10, 1)
    assert round(_seconds(clip, "video") * 16) == 33 and abs(movie["length"] - _seconds(clip, "video") * FPS) <= 1
    assert (speed["start"], speed["channel"], speed["length"]) == (10, 2, movie["length"])
    assert "SOUND" not in strips, r["strips"]
    image, = strips["IMAGE"]  # ComfyUI's PNG holds the placeholder's length
    assert (image["name"], image["start"], image["length"]) == ("a lighthouse at dusk", 100, 48)
    assert _output(jobs["a lighthouse at dusk"], "image").endswith(".png")
    for s in r["strips"]:
        assert s["job"] == r["jobs"][s["name"].split(".")[0]]  # job id in the strip's custom properties
    assert {j["job"] for j in r["scene_jobs"]} == set(r["jobs"].values())  # saved in the scene


def test_sound_effects_land_as_a_sound_strip(blender: Runner, backlot: RealBacklot, host: BlenderHost) -> None:
    """AudioLDM's WAV as a sound strip; a Blender built without sound (bpy 4.2) keeps the placeholder and says why."""
    r = blender("generate", cases=[{"prompt": "rain on a tin roof", "task": "sound_effects", "frame": 200}],
                form={"sound_effects__duration": 2.5})
    assert [(p["start"], p["length"]) for p in r["placeholders"]] == [(200, 60)]  # 2.5 s at 24 fps
    with backlot.client() as c:
        job = c.call("jobs.get", {"job": r["jobs"]["rain on a tin roof"]})
    assert job["state"] == "succeeded" and job["routed_to"].startswith("audioldm@")
    strips = _by_type(r["strips"])
    if host.sound:
        audio, = strips["SOUND"]  # as long as the real file at the scene's 24 fps
        assert (audio["name"], audio["start"]) == ("rain on a tin roof", 200)
        assert abs(audio["length"] - _seconds(_output(job, "audio"), "audio") * FPS) <= 1
        assert "COLOR" not in strips and not r["import_failed"]
    else:  # bounded tries, then the placeholder stays with the reason and the panel offers Import Again
        assert r["import_failed"] == {"rain on a tin roof": 3}
        assert "built without sound support" in r["messages"]["rain on a tin roof"]
        placeholder, = strips["COLOR"]
        assert placeholder["name"].endswith("import failed") and "SOUND" not in strips
        assert ["operator", "backlot.import_again"] in r["drawn"]


def test_video_with_sound_lands_as_movie_and_sound(blender_fake: Runner, host: BlenderHost) -> None:
    """No stand-in renders a clip with a sound track (Wan 2.1 and ComfyUI's video are silent): the test double does."""
    r = blender_fake("generate", cases=[{"prompt": "a red fox running", "task": "text_to_video", "frame": 10}],
                     form={"text_to_video__frames": 30})
    strips = _by_type(r["strips"])
    movie, = strips["MOVIE"]
    assert (movie["name"], movie["start"], movie["channel"], movie["length"]) == ("a red fox running", 10, 1, 30)
    assert "SPEED" not in strips  # the clip's 24 fps is the scene's
    if host.sound:
        sound, = strips["SOUND"]
        assert (sound["start"], sound["channel"]) == (10, 2) and abs(sound["length"] - 30) <= 1
    else:  # bpy 4.2 has no Audaspace: the picture lands alone
        assert "SOUND" not in strips and not r["import_failed"]


def test_clip_plays_at_its_own_rate(blender_fake: Runner, tmp_path: Path) -> None:
    """A 16-frame 16 fps clip in a 24 fps scene lasts 24 frames and shows all 16 frames in order (rendered)."""
    frames = tmp_path / "frames"
    r = blender_fake("generate", cases=[{"prompt": "a bar moving", "task": "text_to_video", "frame": 10}],
                     form={"text_to_video__frames": 16, "text_to_video__fps": 16}, render=str(frames))
    strips = _by_type(r["strips"])
    movie, = strips["MOVIE"]
    speed, = strips["SPEED"]
    assert (movie["start"], movie["length"], speed["start"], speed["length"]) == (10, 24, 10, 24)
    assert r["rendered"] == [10, 33]
    shown = []
    for png in sorted(frames.glob("*.png")):
        with av.open(str(png)) as container:
            shown.append(frame_index(next(container.decode(video=0)).to_ndarray(format="rgb24")))
    assert len(shown) == 24, shown
    assert shown == sorted(shown) and set(shown) == set(range(16)), shown  # every clip frame, in order


def test_failed_import_is_bounded_and_imports_again(blender_fake: Runner) -> None:
    """Placing a result that breaks half-way leaves the placeholder (with why), never copies; Import Again places it once."""
    r = blender_fake("import_failure", cases=[{"prompt": "a red fox running", "task": "text_to_video", "frame": 10}],
                     form={"text_to_video__frames": 16, "text_to_video__fps": 16})
    failed = r["failed"]
    assert failed["tries"] == 3 and failed["progress"] == "import failed"
    assert "speed_factor" in failed["message"] and "Import Again" in failed["message"]
    assert [s["type"] for s in failed["strips"]] == ["COLOR"]  # no movie, speed or sound strip left behind
    placeholder, = failed["placeholder"]
    assert placeholder["name"].endswith("import failed") and "speed_factor" in placeholder["error"]
    assert placeholder["colour"] == [0.7, 0.1, 0.1]
    assert ["operator", "backlot.import_again"] in failed["drawn"]
    for after in (r["after_again"], r["after_second_again"]):  # the second Import Again adds nothing
        assert sorted(s["type"] for s in after) == ["MOVIE", "SOUND", "SPEED"] or sorted(
            s["type"] for s in after) == ["MOVIE", "SPEED"], after
        assert [s["start"] for s in after if s["type"] == "MOVIE"] == [10]
    assert r["after_again"] == r["after_second_again"] and r["message_after"] == ""


def test_generate_for_selected_text_strips(blender: Runner, backlot: RealBacklot, host: BlenderHost) -> None:
    """Installed through Extensions' "Install from Disk" where Blender has them (4.2+), else as a legacy add-on."""
    r = blender("batch", install="extension" if host.extensions else "legacy")
    assert r["module"] == ("bl_ext.user_default.backlot" if host.extensions else "backlot")
    assert [(p["start"], p["channel"]) for p in r["placeholders"]] == [(1, 2), (50, 2)]
    assert [(s["type"], s["name"], s["start"], s["channel"]) for s in r["strips"]] == [
        ("IMAGE", "a storm over the sea", 1, 2), ("IMAGE", "a quiet harbour at dawn", 50, 2)]
    with backlot.client() as c:
        listed = c.call("jobs.list", {"task": "text_to_image", "limit": 1000})["jobs"]
    mine = [j for j in listed if j["id"] in r["jobs"].values()]
    assert sorted((j["prompt"], j["id"], j["state"]) for j in mine) == sorted(
        (p, job_id, "succeeded") for p, job_id in r["jobs"].items())  # one job per strip, each run once


def _fresh_colour() -> int:
    """A colour no earlier run used, so ComfyUI runs the graph instead of answering from its cache."""
    return time.monotonic_ns() % 0xFFFFFF


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
    colour = _fresh_colour()  # ComfyUI answers a graph it ran before from its cache, at once
    long_take = {"workflow": "standin_progress", "seconds": 600, "color": colour}  # 60 s at --speed 10: cancelled
    short_take = {"workflow": "standin_progress", "seconds": 80, "color": colour}  # 8 s: finishes after Blender quit
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


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed")
@pytest.mark.slow
def test_real_timers_under_xvfb(blender: Runner, host: BlenderHost) -> None:
    if host.module:
        pytest.skip(f"{host.id} is a module build: it has no window, so its timers never fire")
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
    # the file as accepted: a snapshot named after it, with its graph (a later edit of the file changes nothing)
    snapshot = Path(by_file["params"]["workflow"])
    assert snapshot.name.startswith("solid-") and snapshot.parent.name == "converted"
    assert json.loads(snapshot.read_text()) == json.loads((elsewhere / "solid.json").read_text())
    assert picked["routed_to"].startswith("comfyui@") and by_file["routed_to"].startswith("comfyui@")
    images = [(s["name"], s["start"]) for s in r["strips"] if s["type"] == "IMAGE"]
    assert images == [("picked workflow", 10), ("workflow file", 200)]


def test_a_sent_output_lands_at_the_playhead_once(blender: Runner, backlot: RealBacklot) -> None:
    """The window's "Send to Blender" (``blender.send``): the connected addon places the file at its playhead."""
    with backlot.client() as c:
        job = c.call("jobs.submit", {"task": "text_to_image", "prompt": "sent from the window",
                                     "params": {"workflow": "standin_image", "color": _fresh_colour()}})
        done = _wait_finished(c, job["id"])
    assert done["state"] == "succeeded", done["status"]
    path = os.path.realpath(_output(done, "image"))
    r = blender("send", send={"job": done["id"], "frame": 42})
    assert (r["sent"]["addons"], r["sent"]["message"]) == (1, "Sent to Blender (1 addon)")
    assert r["sent"]["path"] == _output(done, "image")
    # one image strip at the playhead, 2 s at 24 fps, on the first free channel (a text strip holds channel 1)
    assert [(s["type"], s["name"], s["start"], s["channel"], s["length"], s["file"], s["job"]) for s in r["strips"]] == [
        ("IMAGE", "sent from the window", 42, 2, 48, path, done["id"])]
    assert r["records"] == [[f"sent #{done['seq']}", done["id"], "succeeded", ""]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_file(path: Path, blender: subprocess.Popen[str], timeout: float = 120) -> str:
    """The text the Blender script writes to ``path`` when it reaches that point (it fails the test if it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        if blender.poll() is not None:
            out, err = blender.communicate()
            pytest.fail(f"Blender exited {blender.returncode} before {path.name}:\n{out[-3000:]}\n{err[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"Blender did not reach {path.name} within {timeout:.0f} s")


def test_backlot_stopped_and_started_again_while_blender_waits(host: BlenderHost, real_backlot: RealBacklot,
                                                              tmp_path: Path) -> None:
    """Backlot stops while a job runs and comes back on the same port: Blender reconnects and imports it once."""
    root = tmp_path / "instance"
    home, log = root / "home", root / "backlot.log"
    home.mkdir(parents=True)
    urls, port = [p.url for p in real_backlot.standins.values()], _free_port()
    proc = _start_instance(root, home, log, urls, port)
    blender: subprocess.Popen[str] | None = None
    try:
        _wait_serving(proc, home, log)
        api = Endpoint("127.0.0.1", port, (home / "config" / "api-token").read_text(encoding="utf-8").strip())
        signal_file = tmp_path / "signal"
        env = _blender_env(api, tmp_path, "restart", build_zip(tmp_path / "backlot_addon.zip"),
                           signal=str(signal_file), cases=[
                               {"prompt": "through a restart", "task": "text_to_image", "frame": 30,
                                "params": {"workflow": "standin_progress", "seconds": 60,
                                           "color": _fresh_colour()}}])
        blender = subprocess.Popen(host.command(SCRIPT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        job_id = _wait_for_file(signal_file, blender)
        _stop_instance(proc, log)
        proc = _start_instance(root, home, log, urls, port)
        _wait_serving(proc, home, log)
        out, err = blender.communicate(timeout=180)
        r = _result(host, "restart", tmp_path, blender.returncode, out, err)
    finally:
        if blender is not None and blender.poll() is None:
            blender.kill()
            blender.communicate()
        _stop_instance(proc, log)
    assert r["while_down"][0] != "connected", r["while_down"]
    assert (r["job"], r["state"]) == (job_id, "succeeded"), r["message"]
    images = [s for s in r["strips"] if s["type"] != "COLOR"]
    assert [(s["type"], s["name"], s["start"], s["job"]) for s in images] == [
        ("IMAGE", "through a restart", 30, job_id)]  # exactly one strip for the job
    assert not [s for s in r["strips"] if s["type"] == "COLOR"]


def test_the_panel_starts_a_backend_backlot_launches(host: BlenderHost, tmp_path: Path) -> None:
    """A launch entry that is not running shows with Start; pressing it never waits, shows ◔ starting, and the
    ComfyUI stand-in it launches runs (its row goes: it is a service now)."""
    import tomlkit

    from backlot.standins import demo

    root = tmp_path / "instance"
    home, log = root / "home", root / "backlot.log"
    (home / "config").mkdir(parents=True)
    specs, _ = demo.launch_specs(root / "standins", speed=10, kinds=("comfyui",))
    entry = {**specs["demo-comfyui"], "start": "on-demand"}
    (home / "config" / "config.toml").write_text(tomlkit.dumps({"launch": {"comfy": entry}}), encoding="utf-8")
    proc = _start_instance(root, home, log, [])
    try:
        _wait_serving(proc, home, log)
        api = Endpoint("127.0.0.1", int(json.loads((home / "data" / "instance.json").read_text())["api_port"]),
                       (home / "config" / "api-token").read_text(encoding="utf-8").strip())
        r = _runner(host, api, tmp_path)("launch", launch="comfy")
        with ApiClient(api.host, api.port, token=api.token).connect(timeout=10) as c:
            (view,) = c.call("launch.list")["entries"]
    finally:
        _stop_instance(proc, log)
    assert r["before"] == [["○", "comfy", "stopped"]]
    assert ["operator", "backlot.start_backend"] in r["drawn_before"]
    assert r["start_ms"] < 50 and r["at_once"] == [["◔", "comfy", "starting"]]  # the operator never waits
    assert ["operator", "backlot.start_backend"] not in r["drawn_starting"]
    assert r["seen"][0] == "starting" and r["seen"][-1] == "gone", r["seen"]
    assert ["label", "◔ comfy  starting"] in r["drawn_starting"] and ["operator", "backlot.start_backend"] not in r[
        "drawn_after"]
    assert (view["state"], view["port"]) == ("running", entry["port"])
    assert f"comfyui@127.0.0.1:{entry['port']}" in r["services"]
