"""Runs inside real Blender: install the addon zip, connect to a Backlot API, generate, and check the timeline.

Driven by environment variables from tests/test_addon_blender.py: BACKLOT_TEST_MODE (generate | batch |
save | reopen | timers | bench | workflow | render | import_failure | restart | send | launch), BACKLOT_TEST_ZIP, _HOST,
_PORT, _TOKEN, _BLEND (a .blend path), _CASES (JSON: the jobs generate and save submit), _FORM (JSON:
form properties generate sets), _INSTALL ("extension": through Extensions' Install from Disk, else as a
legacy add-on), _RESULT (JSON written at the end). Runs in the ``blender`` binary (``--python``) and in
PyPI's ``bpy`` module (``python addon_flow.py``) alike. In background mode timers never fire, so the
script pumps the addon's tick itself; ``timers`` mode runs under Xvfb and lets Blender's own timer do
it. Any failed check raises (exit 1).
"""
from __future__ import annotations

import importlib
import json
import os
import time
import traceback

import bpy

ENV = os.environ
MODE = ENV["BACKLOT_TEST_MODE"]
RESULT: dict = {"mode": MODE, "blender": ".".join(map(str, bpy.app.version))}
compat = None  # the addon's compat module, once installed


def setup() -> object:
    """Install and enable the zip, point the preferences at the test server, connect."""
    global compat
    if ENV.get("BACKLOT_TEST_INSTALL") == '"extension"':
        assert bpy.ops.extensions.package_install_files(filepath=ENV["BACKLOT_TEST_ZIP"], repo="user_default",
                                                        enable_on_install=True) == {"FINISHED"}
        module = "bl_ext.user_default.backlot"
    else:
        bpy.ops.preferences.addon_install(filepath=ENV["BACKLOT_TEST_ZIP"], overwrite=True)
        bpy.ops.preferences.addon_enable(module="backlot")
        module = "backlot"
    RESULT["module"] = module
    prefs = bpy.context.preferences.addons[module].preferences
    prefs.host, prefs.port, prefs.token = ENV["BACKLOT_TEST_HOST"], int(ENV["BACKLOT_TEST_PORT"]), ENV["BACKLOT_TEST_TOKEN"]
    bpy.ops.backlot.connect()
    try:
        compat = importlib.import_module(module + ".compat")
    except ImportError:  # an addon from before the compat module (to show what the tests catch)
        compat = None
    return importlib.import_module(module + ".ui")


def pump(ui: object, cond, what: str, timeout: float = 30.0) -> None:
    """Call the addon's timer callback until ``cond()`` holds (timers do not fire in -b)."""
    deadline = time.monotonic() + timeout
    last = 0.0
    while time.monotonic() < deadline:
        if os.environ.get("PUMP_DEBUG") and time.monotonic() - last > 1:
            last = time.monotonic()
            print("PUMP", what, [(r.prompt, r.state, r.fraction, r.job) for r in ui.session.book.records.values()], flush=True)
        ui.tick()
        if cond():
            return
        if ui.session.client is not None:
            ui.session.client.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}; jobs: {[vars(r) for r in ui.session.book.records.values()]}")


def strips(scene=None) -> list:
    """Every strip, read the test's own way (not through the addon's compat module, which is under test)."""
    ed = (scene or bpy.context.scene).sequence_editor
    if ed is None:
        return []
    return list(ed.strips_all if "strips_all" in ed.bl_rna.properties else ed.sequences_all)


PROMPT = "backlot_prompt"  # custom property: the job's prompt, on placeholders and results


def placeholders() -> list:
    return [s for s in strips() if s.type == "COLOR" and s.get("backlot_key")]


def record(ui: object, prompt: str):
    return next(r for r in ui.session.book.records.values() if r.prompt == prompt)


def gave_up(rec) -> bool:
    """The addon stopped trying to import this result (False for an addon without bounded tries)."""
    return bool(getattr(rec, "import_failed", False))


def connected(ui: object) -> None:
    pump(ui, lambda: ui.session.connected and ui.session.tasks and hasattr(bpy.types.WindowManager, "backlot_form"),
         "the connection and the task list")
    RESULT["services"] = [row[1] for row in ui.session.service_rows()]


def describe(s) -> dict:
    return {"name": s.name, "type": s.type, "channel": s.channel, "start": s.frame_final_start,
            "length": s.frame_final_duration, "job": s.get("backlot_job")}


def submit(ui: object, cases: list) -> None:
    """Generate each case ({prompt, task, frame, params?}) at its frame with the operator, timing it."""
    scene = bpy.context.scene
    t0 = time.perf_counter()
    for case in cases:
        scene.frame_current = case["frame"]
        extra = json.dumps(case["params"]) if case.get("params") else ""
        assert bpy.ops.backlot.generate(prompt=case["prompt"], task=case["task"], params=extra) == {"FINISHED"}
    RESULT["generate_ms"] = (time.perf_counter() - t0) * 1000 / len(cases)


def generate(ui: object) -> None:
    """BACKLOT_TEST_CASES (JSON): jobs to generate; BACKLOT_TEST_FORM: form properties to set first."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    connected(ui)
    for prop, value in json.loads(ENV.get("BACKLOT_TEST_FORM", "{}")).items():
        setattr(bpy.context.window_manager.backlot_form, prop, value)
    cases = json.loads(ENV["BACKLOT_TEST_CASES"])
    prompts = [c["prompt"] for c in cases]
    submit(ui, cases)
    RESULT["placeholders"] = [describe(s) for s in sorted(placeholders(), key=lambda s: s.frame_final_start)]
    pump(ui, lambda: all(record(ui, p).job for p in prompts), "the jobs to be accepted")
    RESULT["accepted"] = {s[PROMPT]: [s.name, record(ui, s[PROMPT]).seq] for s in placeholders()}
    pump(ui, lambda: all(record(ui, p).imported or gave_up(record(ui, p)) for p in prompts), "the results", timeout=60)
    RESULT["strips"] = [describe(s) for s in sorted(strips(), key=lambda s: (s.frame_final_start, s.channel))]
    RESULT["jobs"] = {p: record(ui, p).job for p in prompts}
    RESULT["messages"] = {p: record(ui, p).message for p in prompts}
    RESULT["import_failed"] = {p: record(ui, p).import_tries for p in prompts if gave_up(record(ui, p))}
    RESULT["scene_jobs"] = json.loads(scene["backlot_jobs"])
    RESULT["tick_max_ms"] = ui.session.tick_max * 1000
    RESULT["drawn"] = drawn(ui)
    if ENV.get("BACKLOT_TEST_RENDER"):
        render(json.loads(ENV["BACKLOT_TEST_RENDER"]))


def render(folder: str) -> None:
    """Render the first result's frames (the sequencer alone) to PNGs in ``folder``, one per scene frame."""
    scene = bpy.context.scene
    first = min((s for s in strips() if s.type != "COLOR"), key=lambda s: s.frame_final_start)
    scene.frame_start, scene.frame_end = first.frame_final_start, first.frame_final_end - 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 128, 32, 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.use_sequencer = True
    scene.render.filepath = os.path.join(folder, "")
    bpy.ops.render.render(animation=True)
    RESULT["rendered"] = [scene.frame_start, scene.frame_end]


def batch(ui: object) -> None:
    scene = bpy.context.scene
    connected(ui)
    ed = scene.sequence_editor_create()
    for text, frame in (("a storm over the sea", 1), ("a quiet harbour at dawn", 50)):
        coll = ed.strips if "strips" in ed.bl_rna.properties else ed.sequences  # the test's own way
        span = {"length": 20} if "length" in coll.bl_rna.functions["new_effect"].parameters else {"frame_end": frame + 20}
        strip = coll.new_effect(name=text[:10], type="TEXT", channel=1, frame_start=frame, **span)
        strip.text, strip.select = text, True
    assert bpy.ops.backlot.generate_selected(task="text_to_image") == {"FINISHED"}
    RESULT["placeholders"] = [describe(s) for s in sorted(placeholders(), key=lambda s: s.frame_final_start)]
    pump(ui, lambda: len(ui.session.book.records) == 2 and all(r.imported for r in ui.session.book.records.values()),
         "both results")
    RESULT["strips"] = [describe(s) for s in sorted(strips(), key=lambda s: (s.frame_final_start, s.channel))
                        if s.type != "TEXT"]
    RESULT["jobs"] = {r.prompt: r.job for r in ui.session.book.records.values()}


def save(ui: object) -> None:
    """Generate BACKLOT_TEST_CASES, save the file once Backlot runs them all, and quit with them running.

    Each case goes in once the one before it reports progress, so a backend that runs one job at a
    time (ComfyUI) runs them in this order.
    """
    connected(ui)
    cases = json.loads(ENV["BACKLOT_TEST_CASES"])
    for before, case in zip([None, *cases], cases, strict=False):
        if before is not None:
            prompt = before["prompt"]
            pump(ui, lambda p=prompt: bool(record(ui, p).fraction), f"progress of {prompt!r}")
        submit(ui, [case])
    pump(ui, lambda: all(r.job and r.state in ("queued", "running") for r in ui.session.book.records.values()),
         "every job accepted and not finished")
    ui.tick()  # writes the scene property
    RESULT["jobs"] = {r.prompt: r.job for r in ui.session.book.records.values()}
    RESULT["states"] = {r.prompt: r.state for r in ui.session.book.records.values()}
    bpy.ops.wm.save_as_mainfile(filepath=ENV["BACKLOT_TEST_BLEND"])


def reopen(ui: object) -> None:
    connected(ui)
    bpy.ops.wm.open_mainfile(filepath=ENV["BACKLOT_TEST_BLEND"])  # the addon's load_post handler takes over
    RESULT["loaded"] = sorted(r.prompt for r in ui.session.book.records.values())
    RESULT["loaded_states"] = {r.prompt: r.state for r in ui.session.book.records.values()}
    pump(ui, lambda: record(ui, "finished while closed").imported and record(ui, "still running").state == "running"
         and record(ui, "still running").fraction, "the finished job imported and the running one followed")
    RESULT["following"] = record(ui, "still running").fraction
    RESULT["after_open"] = [describe(s) for s in sorted(strips(), key=lambda s: s.frame_final_start)]
    running = record(ui, "still running")
    assert bpy.ops.backlot.cancel(job=running.job) == {"FINISHED"}
    pump(ui, lambda: running.state == "cancelled" and not placeholders(), "the cancel")
    RESULT["after_cancel"] = [describe(s) for s in sorted(strips(), key=lambda s: s.frame_final_start)]


class Drawn:
    """A stand-in for a panel's ``layout`` that records what the panel draws and checks each property exists."""

    def __init__(self, out: list) -> None:
        self.out = out

    def row(self, **_: object) -> "Drawn":
        return self

    column = box = row

    def label(self, text: str = "", **_: object) -> None:
        self.out.append(["label", text])

    def prop(self, data, name: str, **_: object) -> None:
        assert name in data.bl_rna.properties, f"the panel draws {name}, which {data} does not have"
        self.out.append(["prop", name])

    def operator(self, idname: str, **_: object) -> object:
        group, _, name = idname.partition(".")
        assert hasattr(getattr(bpy.ops, group), name), f"the panel draws the unknown operator {idname}"
        self.out.append(["operator", idname])
        return type("Props", (), {})()


def drawn(ui: object) -> list:
    """What the panel's draw function puts in the sidebar now."""
    out: list = []
    ui._draw(type("Panel", (), {"layout": Drawn(out)})(), bpy.context)
    return out


def workflow(ui: object) -> None:
    """Pick the user workflow BACKLOT_TEST_PICK in the panel's picker, then run BACKLOT_TEST_FILE by its path."""
    scene, wm = bpy.context.scene, bpy.context.window_manager
    scene.render.fps, scene.render.fps_base = 24, 1.0
    pick, path = json.loads(ENV["BACKLOT_TEST_PICK"]), json.loads(ENV["BACKLOT_TEST_FILE"])
    connected(ui)
    pump(ui, lambda: any(w.name == pick for w in ui.session.workflows), "the workflow list")
    ui.tick()  # the form is rebuilt with the workflow's own parameters
    wm.backlot_task = "text_to_image"
    RESULT["items"] = [i[0] for i in ui._workflows(wm, bpy.context)]
    wm.backlot_workflow = pick
    wm.backlot_form.text_to_image__wf__seconds = "3"  # a parameter only the workflow has
    RESULT["drawn_picked"] = drawn(ui)
    scene.frame_current = 10
    assert bpy.ops.backlot.generate(prompt="picked workflow") == {"FINISHED"}
    wm.backlot_workflow_file = path
    RESULT["drawn_file"] = drawn(ui)
    wm.backlot_task = "sound_effects"  # no ComfyUI workflow serves it: no picker
    RESULT["drawn_other"] = drawn(ui)
    wm.backlot_task = "text_to_image"
    wm.backlot_workflow_file = path
    scene.frame_current = 200
    assert bpy.ops.backlot.generate(prompt="workflow file") == {"FINISHED"}
    RESULT["placeholders"] = [describe(s) for s in sorted(placeholders(), key=lambda s: s.frame_final_start)]
    prompts = ("picked workflow", "workflow file")
    pump(ui, lambda: all(record(ui, p).imported for p in prompts), "the results", timeout=60)
    RESULT["strips"] = [describe(s) for s in sorted(strips(), key=lambda s: (s.frame_final_start, s.channel))]
    RESULT["jobs"] = {p: record(ui, p).job for p in prompts}
    RESULT["messages"] = {p: record(ui, p).message for p in prompts}


def _timed(ui: object, n: int, before=None) -> list[float]:
    times = []
    for i in range(n):
        if before is not None:
            before(i)
        t0 = time.perf_counter()
        ui.tick()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def bench(ui: object) -> None:
    """Tick durations: idle, with 10 job updates per tick (placeholders renamed and recoloured), and imports."""
    from backlot.client import Notification

    connected(ui)
    scene = bpy.context.scene
    jobs = int(ENV.get("BACKLOT_BENCH_JOBS", "10"))
    for i in range(jobs):
        scene.frame_current = 1 + i * 60
        bpy.ops.backlot.generate(prompt=f"bench {i}", task=("text_to_image", "text_to_video", "sound_effects")[i % 3])
    pump(ui, lambda: all(r.state == "running" for r in ui.session.book.records.values()), "the jobs running")
    recs = list(ui.session.book.records.values())
    RESULT["idle_ms"] = _timed(ui, 500)
    clock = [max(r.updated_at for r in recs)]  # just after the real updates, so later real ones still apply

    def inject(i: int) -> None:
        for k, rec in enumerate(recs):
            clock[0] += 1e-7
            job = {"id": rec.job, "seq": rec.seq, "state": "running", "updated_at": clock[0],
                   "status": {"code": "running", "fraction": ((i + k) % 100) / 100}, "outputs": []}
            ui.session.client.inbox.append(Notification("job.updated", {"job": job}))

    RESULT["updates_ms"] = _timed(ui, 300, inject)
    RESULT["updates_per_tick"] = len(recs)
    with open(ENV["BACKLOT_BENCH_READY"], "w") as f:  # the bench host releases the jobs now
        f.write("ready")
    imports: list[float] = []
    deadline = time.monotonic() + 60
    while not all(r.imported or gave_up(r) for r in recs) and time.monotonic() < deadline:
        before = sum(r.imported for r in recs)
        t0 = time.perf_counter()
        ui.tick()
        took = (time.perf_counter() - t0) * 1000
        if sum(r.imported for r in recs) > before:
            imports.append(took)
        ui.session.client.wait(0.02)
    RESULT["import_ms"] = imports


def import_failure(ui: object) -> None:
    """A result whose placing breaks half-way (the movie strip exists, the next call raises): bounded, no copies.

    Then "Import Again" with the fault gone places it once, and a second "Import Again" adds nothing.
    """
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    connected(ui)
    original = compat.play_at_own_rate

    def broken(coll, movie, scene):  # what Blender 4.2+ did to the old code: no speed_factor
        raise AttributeError("'MovieStrip' object has no attribute 'speed_factor'")

    compat.play_at_own_rate = broken
    for prop, value in json.loads(ENV.get("BACKLOT_TEST_FORM", "{}")).items():
        setattr(bpy.context.window_manager.backlot_form, prop, value)
    submit(ui, json.loads(ENV["BACKLOT_TEST_CASES"]))
    rec = next(iter(ui.session.book.records.values()))
    pump(ui, lambda: rec.import_failed, "the import to give up")
    for _ in range(20):  # later ticks must leave it alone
        ui.tick()
        ui.session.client.wait(0.05)
    holder = placeholders()
    RESULT["failed"] = {"tries": rec.import_tries, "message": rec.message, "progress": rec.progress,
                        "strips": [describe(s) for s in strips()],
                        "placeholder": [{"name": p.name, "error": p.get("backlot_error"), "colour": [
                            round(c, 3) for c in p.color]} for p in holder], "drawn": drawn(ui)}
    compat.play_at_own_rate = original
    assert bpy.ops.backlot.import_again(key=rec.key) == {"FINISHED"}
    pump(ui, lambda: rec.imported, "the import after Import Again")
    RESULT["after_again"] = [describe(s) for s in strips()]
    RESULT["message_after"] = rec.message
    assert bpy.ops.backlot.import_again(key=rec.key) == {"FINISHED"}
    pump(ui, lambda: rec.imported, "the second Import Again")
    RESULT["after_second_again"] = [describe(s) for s in strips()]


def restart(ui: object) -> None:
    """Backlot stops while a job runs and starts again; Blender waits, reconnects and imports the result once."""
    connected(ui)
    case = json.loads(ENV["BACKLOT_TEST_CASES"])[0]
    submit(ui, [case])
    rec = record(ui, case["prompt"])
    pump(ui, lambda: rec.job and rec.state == "running" and rec.fraction, "the job running")
    with open(ENV["BACKLOT_TEST_SIGNAL"], "w") as f:  # the test stops Backlot now and starts it again
        f.write(rec.job)
    pump(ui, lambda: not ui.session.connected, "Backlot to go away")
    RESULT["while_down"] = [ui.session.state, ui.session.message]
    pump(ui, lambda: ui.session.connected, "Backlot to come back", timeout=90)
    pump(ui, lambda: rec.imported or rec.terminal and rec.state != "succeeded", "the result", timeout=60)
    RESULT["job"], RESULT["state"], RESULT["message"] = rec.job, rec.state, rec.message
    for _ in range(10):  # a few more ticks: nothing is imported twice
        ui.tick()
        ui.session.client.wait(0.05)
    RESULT["strips"] = [describe(s) for s in strips()]


def send(ui: object) -> None:
    """BACKLOT_TEST_SEND ({job, frame}): with the playhead at ``frame``, Backlot's "Send to Blender" (the window's
    blender.send, called here through the addon's own connection) places the job's output there, once."""
    want = json.loads(ENV["BACKLOT_TEST_SEND"])
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    connected(ui)
    ed = scene.sequence_editor_create()
    coll = ed.strips if "strips" in ed.bl_rna.properties else ed.sequences  # the test's own way
    span = {"length": 40} if "length" in coll.bl_rna.functions["new_effect"].parameters else {"frame_end": 70}
    coll.new_effect(name="in the way", type="TEXT", channel=1, frame_start=30, **span)  # channel 1 is taken
    scene.frame_current = want["frame"]
    # the place subscription went out when the connection came up, before this call on the same connection
    RESULT["sent"] = ui.session.client.call("blender.send", {"job": want["job"]})
    pump(ui, lambda: any(r.sent and r.imported for r in ui.session.book.records.values()), "the sent file placed")
    for _ in range(10):  # a few more ticks: nothing is placed twice
        ui.tick()
        ui.session.client.wait(0.05)
    RESULT["records"] = [[r.label, r.sent, r.state, r.message] for r in ui.session.book.records.values()]
    RESULT["strips"] = [{**describe(s), "file": _file_of(s)} for s in strips() if s.type != "TEXT"]


def launch(ui: object) -> None:
    """BACKLOT_TEST_LAUNCH (an entry's name): the panel lists it stopped with Start; Start answers at once and shows
    it starting; once it runs its row goes (it is among the services then)."""
    name = json.loads(ENV["BACKLOT_TEST_LAUNCH"])

    def rows() -> list:
        return [[r.symbol, r.name, r.state] for r in ui.session.launches.rows()]

    connected(ui)
    pump(ui, lambda: any(r.name == name for r in ui.session.launches.rows()), "the launch entry")
    RESULT["before"], RESULT["drawn_before"] = rows(), drawn(ui)
    t0 = time.perf_counter()
    assert bpy.ops.backlot.start_backend(entry=name) == {"FINISHED"}
    RESULT["start_ms"] = (time.perf_counter() - t0) * 1000
    RESULT["at_once"], RESULT["drawn_starting"] = rows(), drawn(ui)
    seen: list = []

    def running() -> bool:
        state = next((r[2] for r in rows() if r[1] == name), "gone")
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == "gone"

    pump(ui, running, "the entry to run", timeout=90)
    RESULT["seen"], RESULT["drawn_after"] = seen, drawn(ui)
    RESULT["services"] = [row[1] for row in ui.session.service_rows()]


def _file_of(s) -> str:
    """The absolute path of the file an image, movie or sound strip shows."""
    if s.type == "IMAGE":
        return os.path.realpath(os.path.join(bpy.path.abspath(s.directory), s.elements[0].filename))
    if s.type == "MOVIE":
        return os.path.realpath(bpy.path.abspath(s.filepath))
    if s.type == "SOUND":
        return os.path.realpath(bpy.path.abspath(s.sound.filepath))
    return ""


def finish(code: int) -> None:
    with open(ENV["BACKLOT_TEST_RESULT"], "w", encoding="utf-8") as f:
        json.dump(RESULT, f)
    if MODE == "timers":
        os._exit(code)
    if code:
        raise SystemExit(code)


def timers_mode(ui: object) -> None:
    """Under Xvfb: the addon's own bpy.app.timers tick must connect, place and import with no pumping."""
    deadline = time.monotonic() + 90
    state = {"sent": False}

    def driver() -> float | None:
        try:
            if time.monotonic() > deadline:
                RESULT["error"] = "timed out"
                finish(1)
            s = ui.session
            if not state["sent"]:
                if s.connected and s.tasks and hasattr(bpy.types.WindowManager, "backlot_form"):
                    bpy.context.scene.frame_current = 7
                    bpy.ops.backlot.generate(prompt="timer driven", task="text_to_image")
                    state["sent"] = True
                return 0.1
            rec = record(ui, "timer driven")
            if rec.imported:
                RESULT["strips"] = [describe(x) for x in strips()]
                RESULT["ticks"] = s.tick_count
                RESULT["tick_max_ms"] = s.tick_max * 1000
                finish(0)
            return 0.1
        except Exception:  # noqa: BLE001
            RESULT["error"] = traceback.format_exc()
            finish(1)
            return None

    bpy.app.timers.register(driver, first_interval=0.1)


try:
    UI = setup()
    {"generate": generate, "batch": batch, "save": save, "reopen": reopen, "timers": timers_mode,
     "bench": bench, "workflow": workflow, "import_failure": import_failure, "restart": restart,
     "send": send, "launch": launch}[MODE](UI)
except Exception:
    RESULT["error"] = traceback.format_exc()
    finish(1)
if MODE != "timers":
    bpy.ops.backlot.connect  # noqa: B018  (the operator still resolves after the run)
    UI.session.disconnect()
    finish(0)
