"""The addon's pure parts outside Blender: placement, job bookkeeping, the task schema, the session tick, the zip."""
from __future__ import annotations

import ast
import json
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from addon_fake_api import TASKS, Endpoint, FakeBacklot, backlot_api, fake_backlot  # noqa: F401

from backlot.blender_addon import client as rpc
from backlot.blender_addon.jobbook import (
    JobBook,
    Tracked,
    choose_output,
    free_channel,
    placeholder_length,
    strip_name,
)
from backlot.blender_addon.package import build_zip
from backlot.blender_addon.schema import coerce, extra_params, parse_tasks
from backlot.blender_addon.session import AddonSession


class FakeTimeline:
    """Records what the session asks of Blender."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.saved: dict[str, str] = {}

    def update_placeholder(self, rec: Tracked) -> None:
        self.calls.append(("update", rec.state))

    def remove_placeholder(self, rec: Tracked) -> None:
        self.calls.append(("remove", rec.key))

    def import_result(self, rec: Tracked, kind: str, path: str) -> list[str]:
        assert Path(path).is_file()
        self.calls.append(("import", (rec.prompt, kind)))
        return [rec.prompt]

    def save_scene(self, scene: str, text: str) -> None:
        self.saved[scene] = text

    def playhead(self) -> tuple[str, int, float]:
        return "Scene", 42, 24.0

    def busy(self) -> bool:
        return False

    def redraw(self) -> None:
        self.calls.append(("redraw", None))


def pump(s: AddonSession, cond: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.tick()
        if cond():
            return
        assert s.client is not None
        s.client.wait(0.05)
    raise AssertionError("condition not met")


def test_free_channel_skips_overlaps_and_needs_span() -> None:
    occupied = [(1, 0, 100), (2, 50, 60), (3, 0, 10)]
    assert free_channel(occupied, 10, 20) == 2  # channel 2 is busy only from 50
    assert free_channel(occupied, 40, 20) == 3
    assert free_channel(occupied, 40, 20, span=2) == 3  # 3 and 4 free over 40..60
    assert free_channel(occupied, 5, 10, span=2) == 4  # 3 busy until 10
    assert free_channel(occupied, 100, 5) == 1  # strips end exclusive
    assert free_channel(occupied, 5, 20, lowest=3) == 4


def test_placeholder_length_from_params() -> None:
    assert placeholder_length({"frames": 81}, 24, "video") == 81
    assert placeholder_length({"duration": 1.5}, 24, "audio") == 36
    assert placeholder_length({}, 25, "image") == 50
    assert placeholder_length({"frames": 0, "seconds": 2}, 30, "video") == 60


def test_choose_output_prefers_expected_media() -> None:
    outs = [{"path": "/a/x.png", "mime": "image/png"}, {"path": "/a/y.mp4", "mime": "video/mp4"}]
    assert choose_output(outs, "video") == ("video", "/a/y.mp4")
    assert choose_output(outs, "image") == ("image", "/a/x.png")
    # AudioLDM answers with a waveform MP4: an audio task imports it as sound
    assert choose_output([{"path": "/a/w.mp4", "mime": "video/mp4"}], "audio") == ("audio", "/a/w.mp4")
    assert choose_output([{"path": "/a/z.bin", "mime": "application/octet-stream"}], "video") is None
    assert strip_name("  a   long\nprompt ") == "a long prompt"
    assert len(strip_name("x" * 200)) == 48


def test_book_ignores_stale_updates_and_round_trips_json() -> None:
    book = JobBook()
    rec = book.add("Scene", "p", "text_to_video", 10, 2, 30, "video")
    book.accepted(rec.key, {"id": "j1", "seq": 7, "state": "queued", "updated_at": 1.0})
    assert rec.label == "job #7"
    book.apply({"id": "j1", "state": "running", "status": {"fraction": 0.5}, "updated_at": 3.0})
    assert book.apply({"id": "j1", "state": "queued", "updated_at": 2.0}) is None  # older than what we have
    assert (rec.state, rec.progress) == ("running", "running 50%")
    assert book.apply({"id": "other", "state": "running"}) is None
    orphan = book.add("Scene", "q", "text_to_image", 0, 1, 48, "image")
    text = book.dumps("Scene")
    again = JobBook()
    assert again.load("Scene", text) == 2
    assert again.by_job("j1").state == "running" and again.by_job("j1").frame == 10
    lost = again.get(orphan.key)
    assert lost.state == "rejected" and "saved before" in lost.message  # never accepted: nothing to follow
    assert [r.job for r in again.watching()] == ["j1"]


def test_parse_tasks_accepts_list_or_mapping() -> None:
    tasks = parse_tasks({"tasks": TASKS})
    t2v = next(t for t in tasks if t.name == "text_to_video")
    frames = next(p for p in t2v.params if p.name == "frames")
    assert (frames.type, frames.min, frames.max, frames.default) == ("int", 8, 240, 24)
    assert next(p for p in t2v.params if p.name == "sampler").choices == ("euler", "dpmpp")
    i2v = next(t for t in tasks if t.name == "image_to_video")
    assert [(i.name, i.media, i.required) for i in i2v.inputs] == [("image", "image", True)]
    mapped = parse_tasks({"tasks": {"sound_effects": {"params": {"duration": {"type": "number", "min": 0.5}}}}})
    assert mapped[0].output == "audio" and mapped[0].params[0].type == "float"
    assert coerce(frames, 999) == 240 and coerce(frames, "12") == 12


def test_extra_params_take_a_json_object_or_nothing() -> None:
    assert extra_params("") == {} and extra_params("  ") == {}
    assert extra_params('{"workflow": "standin_progress", "seconds": 60}') == {"workflow": "standin_progress",
                                                                               "seconds": 60}
    for bad in ("seconds=60", "[1, 2]", '"text"', "{"):
        with pytest.raises(ValueError, match=r"^Extra parameters must be a JSON object, like \{\"seconds\": 60\}\.$"):
            extra_params(bad)


def test_session_tick_submits_follows_and_imports(backlot_api: Endpoint) -> None:
    host = FakeTimeline()
    s = AddonSession(host)
    s.connect(backlot_api.host, backlot_api.port, token=backlot_api.token)
    try:
        pump(s, lambda: s.connected and s.tasks and s.services)
        assert s.service_rows()[0] == ("○", "audioldm@127.0.0.1:7863", "down")
        rec = s.book.add("Scene", "a cat", "text_to_image", 1, 1, 48, "image")
        s.submit(rec, {"width": 64, "height": 64}, [])
        pump(s, lambda: rec.imported)
        assert ("import", ("a cat", "image")) in host.calls
        assert ("update", "running") in host.calls
        saved = json.loads(host.saved["Scene"])
        assert saved[0]["job"] == rec.job and saved[0]["imported"] is True
        bad = s.book.add("Scene", "x", "no_such_task", 1, 1, 48, "image")
        s.submit(bad, {}, [])
        pump(s, lambda: bad.state == "rejected")
        assert "unknown task" in bad.message
    finally:
        s.disconnect()


def test_session_reload_picks_up_a_finished_job(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    with rpc.ApiClient(backlot_api.host, backlot_api.port, token=backlot_api.token).connect() as c:
        job = c.call("jobs.submit", {"task": "sound_effects", "prompt": "wind", "params": {"duration": 1.0}})
    book = JobBook()
    rec = book.add("Shot", "wind", "sound_effects", 5, 1, 24, "audio")
    book.accepted(rec.key, job)
    host = FakeTimeline()
    s = AddonSession(host)
    s.connect(backlot_api.host, backlot_api.port, token=backlot_api.token)
    try:
        s.reload({"Shot": book.dumps("Shot")})
        pump(s, lambda: s.book.by_job(job["id"]) is not None and s.book.by_job(job["id"]).imported)
        assert ("import", ("wind", "audio")) in host.calls
    finally:
        s.disconnect()


def test_session_shows_lost_connection() -> None:
    s = AddonSession(FakeTimeline())
    s.connect("127.0.0.1", 1, token="t")
    try:
        pump(s, lambda: s.state == rpc.DISCONNECTED)
        assert "not running" in s.message
    finally:
        s.disconnect()


def test_build_zip_is_installable(tmp_path: Path) -> None:
    path = build_zip(tmp_path)
    assert path == tmp_path / "backlot_addon.zip"
    assert build_zip(f"{tmp_path}/new/") == tmp_path / "new" / "backlot_addon.zip"  # a folder to make, not a file
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert "backlot/__init__.py" in names and "backlot/client.py" in names
        assert all(n.startswith("backlot/") and (n.endswith(".py") or n == "backlot/blender_manifest.toml")
                   for n in names)
        init = ast.parse(zf.read("backlot/__init__.py"))
        manifest = tomllib.loads(zf.read("backlot/blender_manifest.toml").decode())
    bl_info = ast.literal_eval(next(n for n in init.body if isinstance(n, ast.Assign)
                                    and n.targets[0].id == "bl_info").value)
    assert bl_info["name"] == manifest["name"] == "Backlot"
    # Extensions (4.2+): one version for both ways of installing, the range stated, what it touches declared
    assert manifest["version"] == ".".join(map(str, bl_info["version"]))
    assert (manifest["id"], manifest["type"], manifest["blender_version_min"]) == ("backlot", "add-on", "4.2.0")
    assert set(manifest["permissions"]) == {"network", "files"} and manifest["license"] == ["SPDX:MIT"]
    assert len(manifest["tagline"]) <= 64 and not manifest["tagline"].endswith(".")


class FlakyTimeline(FakeTimeline):
    """A timeline whose imports raise (as Blender's API did when it changed) until ``failures`` runs out."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures, self.tries = failures, 0

    def import_result(self, rec: Tracked, kind: str, path: str) -> list[str]:
        self.tries += 1
        if self.failures:
            self.failures -= 1
            raise AttributeError("'MovieSequence' object has no attribute 'speed_factor'")
        return super().import_result(rec, kind, path)


def _finished(s: AddonSession, tmp_path: Path) -> Tracked:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a clip")
    rec = s.book.add("Shot", "a fox", "text_to_video", 10, 1, 24, "video")
    s.book.accepted(rec.key, {"id": "j1", "seq": 1, "state": "succeeded", "updated_at": 1.0,
                              "outputs": [{"path": str(clip), "mime": "video/mp4"}]})
    return rec


def test_an_import_that_keeps_failing_stops_and_imports_again(tmp_path: Path) -> None:
    host = FlakyTimeline(failures=100)
    s = AddonSession(host, import_retry_s=0.0)
    rec = _finished(s, tmp_path)
    for _ in range(20):
        s.tick()
    assert host.tries == 3 and rec.import_failed and not rec.needs_import and rec.progress == "import failed"
    assert "speed_factor" in rec.message and "Import Again" in rec.message
    assert ("update", "succeeded") in host.calls  # the placeholder shows the failure
    assert not s.import_again("no such key")
    host.failures = 0
    assert s.import_again(rec.key)
    s.tick()
    assert host.tries == 4 and rec.imported and rec.message == "" and rec.import_tries == 0
    assert [c for c in host.calls if c[0] == "import"] == [("import", ("a fox", "video"))]  # placed once


def test_a_failed_import_waits_before_its_next_try(tmp_path: Path) -> None:
    host = FlakyTimeline(failures=1)
    s = AddonSession(host)  # the real pause between tries (a second)
    rec = _finished(s, tmp_path)
    for _ in range(5):
        s.tick()
    assert host.tries == 1 and rec.needs_import and "try 1 of 3" in rec.message


def test_import_tries_survive_a_save_and_older_files_load(tmp_path: Path) -> None:
    s = AddonSession(FlakyTimeline(failures=100), import_retry_s=0.0)
    rec = _finished(s, tmp_path)
    for _ in range(5):
        s.tick()
    book = JobBook()
    book.load("Shot", s.book.dumps("Shot"))
    again = book.by_job("j1")
    assert again is not None and again.import_failed and again.import_error == rec.import_error
    old = json.loads(s.book.dumps("Shot"))
    for item in old:  # a file saved by an addon before import tries existed
        del item["import_tries"], item["import_error"]
    book.load("Shot", json.dumps(old))
    assert book.by_job("j1").needs_import  # type: ignore[union-attr]


def test_client_and_pure_modules_use_only_the_stdlib() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"bpy", "addon_utils"}
    for file in Path("blender_addon").resolve().parent.joinpath("blender_addon").glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] in allowed, f"{file.name} imports {mod}"


def test_cli_addon_writes_the_zip(tmp_path: Path, capsys: Any) -> None:
    from main import main

    assert main(["addon", "--output", str(tmp_path / "out" / "addon.zip")]) == 0
    printed = capsys.readouterr().out.splitlines()[0].strip()
    assert printed == str(tmp_path / "out" / "addon.zip") and zipfile.is_zipfile(printed)


def test_form_leaves_out_untouched_params_without_default() -> None:
    from backlot.blender_addon.schema import form_params

    spec = parse_tasks({"tasks": [{"name": "text_to_video", "params": [
        {"name": "width", "type": "int", "min": 16, "max": 16384, "default": None},
        {"name": "resolution", "type": "str", "default": None},
        {"name": "frames", "type": "int", "min": 1, "max": 100, "default": 24},
        {"name": "extra", "type": "object", "default": None}]}]})[0]
    assert [p.name for p in spec.params] == ["width", "resolution", "frames"]  # no form for objects
    assert form_params(spec.params, {"width": 16, "resolution": "", "frames": 24}) == {"frames": 24}
    assert form_params(spec.params, {"width": 512, "resolution": "720p", "frames": 500}) == {
        "width": 512, "resolution": "720p", "frames": 100}


def test_workflow_picker_items_come_from_workflows_list_per_task() -> None:
    from addon_fake_api import WORKFLOWS

    from backlot.blender_addon import workflows as wf

    flows = wf.parse_workflows({"workflows": [*WORKFLOWS, {"name": ""}, "junk"]})
    assert [w.name for w in flows] == ["my_flow", "text_to_image", "upscale"]  # nameless and malformed ones dropped
    assert wf.workflow_tasks(flows) == {"text_to_image", "upscale"}
    items = wf.enum_items(flows, "text_to_image")
    assert [(i[0], i[1]) for i in items] == [(wf.DEFAULT, "Default"), ("my_flow", "my_flow"),
                                             ("text_to_image", "text_to_image")]
    assert "(/home/me/.config/backlot/workflows)" in items[1][2]  # a user workflow says where it lives
    assert [i[0] for i in wf.enum_items(flows, "upscale")] == [wf.DEFAULT, "upscale"]
    assert [i[0] for i in wf.enum_items(flows, "sound_effects")] == [wf.DEFAULT]
    # numbers are stable, so the choice survives a refreshed list with a workflow added before it
    more = wf.parse_workflows([{"name": "a_first", "task": "text_to_image"}, *WORKFLOWS])
    assert {i[0]: i[4] for i in wf.enum_items(more, "text_to_image")}["my_flow"] == items[1][4]
    assert len({i[4] for i in wf.enum_items(more, "text_to_image")}) == 4


def test_workflow_params_sent_with_the_job() -> None:
    from addon_fake_api import WORKFLOWS

    from backlot.blender_addon import workflows as wf

    flows = wf.parse_workflows(WORKFLOWS)
    mine = wf.find(flows, "my_flow")
    # the task's form has seed already: only seconds gets a field of its own; prompt is the prompt field
    assert wf.extra_names(mine, {"width", "height", "seed"}) == ["seconds"]
    assert wf.workflow_params(wf.DEFAULT, "", {}) == {}
    assert wf.workflow_params("", "", {}) == {}  # a stale choice Blender reads as '' is the default
    assert wf.workflow_params("my_flow", "", {"seconds": "2.5"}) == {"workflow": "my_flow", "seconds": 2.5}
    assert wf.workflow_params("my_flow", "", {"seconds": " "}) == {"workflow": "my_flow"}  # empty: the workflow's own
    assert wf.workflow_params("my_flow", "", {"color": "red"}) == {"workflow": "my_flow", "color": "red"}
    assert wf.workflow_params("my_flow", "/abs/flow.json", {}) == {"workflow": "/abs/flow.json"}  # the file wins


def test_session_fetches_workflows_on_connect_and_on_refresh(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    s = AddonSession(FakeTimeline())
    s.connect(backlot_api.host, backlot_api.port, token=backlot_api.token)
    try:
        pump(s, lambda: s.connected and s.workflows)
        assert [w.name for w in s.workflows] == ["my_flow", "text_to_image", "upscale"]
        asked = [m for m, _ in fake_backlot.calls].count("workflows.list")
        s.refresh_workflows()
        pump(s, lambda: [m for m, _ in fake_backlot.calls].count("workflows.list") == asked + 1)
    finally:
        s.disconnect()


def test_a_sent_file_is_placed_once_at_the_playhead(tmp_path: Path) -> None:
    """``blender.place``: a finished record at the host's playhead that the tick imports once, like a job's result."""
    png = tmp_path / "shot.png"
    png.write_bytes(b"png")
    host = FakeTimeline()
    s = AddonSession(host)
    place = {"job_id": "abc", "seq": 7, "path": str(png), "mime": "image/png", "name": "shot.png", "prompt": "a fox"}
    s.handle(rpc.Notification("blender.place", place))
    s.handle(rpc.Notification("blender.place", {**place, "mime": "application/zip"}))  # nothing Blender places
    (rec,) = s.book.records.values()
    assert (rec.scene, rec.frame, rec.channel, rec.length, rec.output) == ("Scene", 42, 1, 48, "image")
    assert (rec.label, rec.sent, rec.job, rec.needs_import) == ("sent #7", "abc", None, True)
    for _ in range(5):
        s.tick()
    assert [c for c in host.calls if c[0] == "import"] == [("import", ("a fox", "image"))]  # placed once
    assert rec.imported and not s.book.watching()  # nothing to ask Backlot about
    again = JobBook()
    assert again.load("Scene", host.saved["Scene"]) == 1
    loaded = again.get(rec.key)
    assert loaded.sent == "abc" and loaded.imported and loaded.state == "succeeded"  # not placed again on load


def test_the_session_subscribes_to_sent_files_on_its_own(backlot_api: Endpoint, fake_backlot: FakeBacklot) -> None:
    """The place topic goes in a request of its own once connected: a Backlot without it refuses only that one."""
    s = AddonSession(FakeTimeline())
    s.connect(backlot_api.host, backlot_api.port, token=backlot_api.token)
    try:
        pump(s, lambda: ("events.subscribe", {"topics": ["blender.place"]}) in fake_backlot.calls)
        assert s.connected
    finally:
        s.disconnect()


def _view(name: str, state: str, message: str = "", port: int = 8188) -> dict[str, Any]:
    """A launch entry as ``launch.list`` and ``launch.updated`` carry it (the fields the panel reads, and a few)."""
    return {"name": name, "kind": "comfyui", "state": state, "message": message, "pid": None, "port": port,
            "restarts": 0, "last_exit": None}


def test_the_panel_starts_a_stopped_backend_and_shows_it_starting(backlot_api: Endpoint,
                                                                  fake_backlot: FakeBacklot) -> None:
    """Start sends launch.start without waiting; the entry shows ◔ starting until launch.updated says it runs."""
    from backlot.blender_addon.launches import LaunchRow

    fake_backlot.launch = {"comfy": _view("comfy", "stopped"),
                           "wan": _view("wan", "failed", "exited (code 1); last lines:\nCUDA out of memory", 8000),
                           "busy": _view("busy", "blocked", "port 7860 is held by python (pid 9)", 7860),
                           "llm": _view("llm", "running", port=8080)}
    fake_backlot.refuse_start["wan"] = "this Backlot does not launch backends"
    host = FakeTimeline()
    s = AddonSession(host)
    s.connect(backlot_api.host, backlot_api.port, token=backlot_api.token)
    try:
        pump(s, lambda: s.launches.rows() and ("events.subscribe", {"topics": ["launch.updated"]}) in fake_backlot.calls)
        assert s.launches.rows() == [  # not running: each with why it is not, Start where starting makes sense
            LaunchRow("busy", "◐", "blocked", "port 7860 is held by python (pid 9)", False),
            LaunchRow("comfy", "○", "stopped", "", True),
            LaunchRow("wan", "○", "failed", "exited (code 1); last lines:", True)]
        redraws = host.calls.count(("redraw", None))
        s.start_backend("comfy")
        assert s.launches.rows()[1] == LaunchRow("comfy", "◔", "starting", "", False)  # at once, before any answer
        s.tick()
        assert host.calls.count(("redraw", None)) == redraws + 1
        pump(s, lambda: not s.launches.asked)  # Backlot's answer: starting, spawned
        assert s.launches.entries["comfy"]["pid"] == 4242 and s.launches.rows()[1].symbol == "◔"
        assert ("launch.start", {"names": ["comfy"]}) in fake_backlot.calls
        fake_backlot.launch_ready("comfy")
        pump(s, lambda: "comfy" not in [r.name for r in s.launches.rows()])  # running: a service now, not a row
        s.start_backend("wan")  # refused: the row says why and offers Start again
        pump(s, lambda: not s.launches.asked)
        assert s.launches.rows()[-1] == LaunchRow("wan", "○", "failed", "this Backlot does not launch backends", True)
    finally:
        s.disconnect()


def test_a_backlot_without_the_launcher_shows_no_launch_rows(backlot_api: Endpoint, fake_backlot: FakeBacklot,
                                                             caplog: Any) -> None:
    fake_backlot.launch = None  # launch.list is an unknown method there
    s = AddonSession(FakeTimeline())
    s.connect(backlot_api.host, backlot_api.port, token=backlot_api.token)
    try:
        pump(s, lambda: s.connected and s.tasks and any(m == "launch.list" for m, _ in fake_backlot.calls))
        for _ in range(5):
            s.tick()
            s.client.wait(0.05)  # type: ignore[union-attr]
        assert s.launches.rows() == [] and s.services  # the rest of the panel as before
        assert "launch" not in caplog.text
    finally:
        s.disconnect()
