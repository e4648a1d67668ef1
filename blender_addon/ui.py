"""Operators, panels, the timer and the file-load handler of the Backlot addon (preferences: prefs.py)."""
from __future__ import annotations

import logging
from typing import Any

import bpy
from bpy.app.handlers import persistent

from . import compat, form, timeline
from . import workflows as wf
from .jobbook import free_channel, placeholder_length
from .prefs import ADDON, BacklotPreferences
from .schema import extra_params
from .session import AddonSession

log = logging.getLogger(__name__)
INTERVAL = 0.15
session: AddonSession | None = None
_reload_pending = False
_task_items: list[tuple[str, str, str]] = []  # kept alive: Blender does not copy enum item strings
_workflow_items: list[tuple[str, str, str, str, int]] = []  # the same for the workflow picker


def prefs() -> Any:
    """The addon's preferences."""
    return bpy.context.preferences.addons[ADDON].preferences


def tick() -> float:
    """The ``bpy.app.timers`` callback: drain the client, update strips and panels; never blocks."""
    global _reload_pending
    if session is None:
        return INTERVAL
    try:
        if _reload_pending:  # bpy.data is off limits while an addon registers at start-up
            _reload_pending = False
            session.reload(timeline.saved_jobs())
        interval = session.tick()
        if session.tasks:
            form.build(session.tasks, session.workflows)
        return interval
    except Exception:  # the timer must survive a bug  # noqa: BLE001
        log.exception("backlot tick failed")
        return INTERVAL


def connect() -> None:
    """Connect (again) with the current preferences and make sure the timer runs."""
    p = prefs()
    assert session is not None
    session.connect(p.host, p.port, p.token, bpy.path.abspath(p.token_file) if p.token_file else "")
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=INTERVAL, persistent=True)


def _tasks(self: Any, context: Any) -> list[tuple[str, str, str]]:
    _task_items[:] = [(t.name, t.title, t.help) for t in (session.tasks if session else [])] or [("", "(connect to list tasks)", "")]
    return _task_items


def _workflows(self: Any, context: Any) -> list[tuple[str, str, str, str, int]]:
    _workflow_items[:] = wf.enum_items(session.workflows if session else [], getattr(self, "backlot_task", ""))
    return _workflow_items


def _task_changed(self: Any, context: Any) -> None:
    self.backlot_workflow = wf.DEFAULT  # the last task's workflow does not serve this one


class BACKLOT_OT_refresh_workflows(bpy.types.Operator):
    """Ask Backlot again for the workflows (after adding one to its workflows folder)"""

    bl_idname = "backlot.refresh_workflows"
    bl_label = "Refresh Workflows"

    def execute(self, context: Any) -> set[str]:
        """Send workflows.list; the picker updates when the answer arrives."""
        if session is None or not session.connected:
            self.report({"ERROR"}, "Backlot is not connected; press Connect first.")
            return {"CANCELLED"}
        session.refresh_workflows()
        return {"FINISHED"}


class BACKLOT_OT_connect(bpy.types.Operator):
    """Connect to Backlot with the addon preferences"""

    bl_idname = "backlot.connect"
    bl_label = "Connect"

    def execute(self, context: Any) -> set[str]:
        """Start connecting; the panel shows the outcome."""
        connect()
        return {"FINISHED"}


def _start_job(context: Any, scene: Any, prompt: str, task_name: str, frame: int, lowest: int, extra: str) -> str:
    """Place a placeholder and submit one job (``extra``: more parameters as JSON); returns an error sentence or ''."""
    assert session is not None
    task = session.task(task_name)
    if task is None:
        return f"Backlot offers no task {task_name!r}."
    wm = context.window_manager
    ed = scene.sequence_editor
    params, inputs = form.values(getattr(wm, "backlot_form", None), task, ed.active_strip if ed else None)
    params.update(form.workflow_values(wm, getattr(wm, "backlot_form", None), task, session.workflows))
    try:
        params.update(extra_params(extra))
    except ValueError as err:
        return str(err)
    fps = scene.render.fps / scene.render.fps_base
    length = placeholder_length(params, fps, task.output)
    channel = free_channel(timeline.occupied(scene), frame, length, lowest=lowest)
    rec = session.book.add(scene.name, prompt, task.name, frame, channel, length, task.output)
    timeline.place_placeholder(scene, rec)
    session.submit(rec, params, inputs, wm.backlot_backend)
    return ""


class BACKLOT_OT_generate(bpy.types.Operator):
    """Generate from the prompt; a placeholder strip stands at the current frame until the result lands"""

    bl_idname = "backlot.generate"
    bl_label = "Generate"
    prompt: bpy.props.StringProperty(name="Prompt", description="empty: the panel's prompt")  # type: ignore[valid-type]
    task: bpy.props.StringProperty(name="Task", description="empty: the panel's task")  # type: ignore[valid-type]
    params: bpy.props.StringProperty(name="Extra parameters",  # type: ignore[valid-type]
                                     description="JSON object; empty: the panel's extra parameters")

    def execute(self, context: Any) -> set[str]:
        """Submit one job."""
        wm, scene = context.window_manager, compat.editing_scene(context)
        prompt = self.prompt or wm.backlot_prompt
        if session is None or not session.connected:
            self.report({"ERROR"}, "Backlot is not connected; press Connect first.")
            return {"CANCELLED"}
        if not prompt.strip():
            self.report({"ERROR"}, "Write a prompt first.")
            return {"CANCELLED"}
        error = _start_job(context, scene, prompt, self.task or wm.backlot_task, scene.frame_current, 1,
                           self.params or wm.backlot_extra)
        if error:
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        return {"FINISHED"}


class BACKLOT_OT_generate_selected(bpy.types.Operator):
    """One job per selected text strip, its text as the prompt; each result lands at its strip's frame"""

    bl_idname = "backlot.generate_selected"
    bl_label = "Generate for Selected Strips"
    task: bpy.props.StringProperty(name="Task", description="empty: the panel's task")  # type: ignore[valid-type]
    params: bpy.props.StringProperty(name="Extra parameters",  # type: ignore[valid-type]
                                     description="JSON object; empty: the panel's extra parameters")

    def execute(self, context: Any) -> set[str]:
        """Submit one job per selected text strip."""
        scene, wm = compat.editing_scene(context), context.window_manager
        if session is None or not session.connected:
            self.report({"ERROR"}, "Backlot is not connected; press Connect first.")
            return {"CANCELLED"}
        strips = [s for s in compat.top_strips(scene) if s.select and s.type == "TEXT" and s.text.strip()]
        if not strips:
            self.report({"ERROR"}, "Select one or more text strips; each one's text becomes a prompt.")
            return {"CANCELLED"}
        for strip in sorted(strips, key=lambda s: (s.frame_final_start, s.channel)):
            error = _start_job(context, scene, strip.text, self.task or wm.backlot_task, strip.frame_final_start,
                               strip.channel + 1, self.params or wm.backlot_extra)
            if error:
                self.report({"ERROR"}, error)
                return {"CANCELLED"}
        self.report({"INFO"}, f"{len(strips)} jobs sent to Backlot.")
        return {"FINISHED"}


class BACKLOT_OT_cancel(bpy.types.Operator):
    """Cancel a Backlot job (default: the jobs of the selected placeholders, else the newest running one)"""

    bl_idname = "backlot.cancel"
    bl_label = "Cancel"
    job: bpy.props.StringProperty(name="Job id")  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        """Ask Backlot to cancel."""
        if session is None or not session.connected:
            self.report({"ERROR"}, "Backlot is not connected; press Connect first.")
            return {"CANCELLED"}
        scene = compat.editing_scene(context)
        jobs = [self.job] if self.job else [s.get(timeline.JOB_PROP) for s in compat.top_strips(scene)
                                            if s.select and s.type == "COLOR" and s.get(timeline.JOB_PROP)]
        if not jobs:
            active = [r for r in session.book.for_scene(scene.name) if r.job and not r.terminal]
            jobs = [active[0].job] if active else []
        for job in jobs:
            session.cancel(str(job))
        return {"FINISHED"} if jobs else {"CANCELLED"}


class BACKLOT_OT_start_backend(bpy.types.Operator):
    """Start this backend (a launch entry of Backlot's); the panel shows it starting until it answers"""

    bl_idname = "backlot.start_backend"
    bl_label = "Start"
    entry: bpy.props.StringProperty(name="Launch entry")  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        """Send launch.start without waiting; the answer and the news arrive through the timer."""
        if session is None or not session.connected:
            self.report({"ERROR"}, "Backlot is not connected; press Connect first.")
            return {"CANCELLED"}
        session.start_backend(self.entry)
        return {"FINISHED"}


class BACKLOT_OT_import_again(bpy.types.Operator):
    """Place a finished job's result on the timeline again (after an import failed; its files stay in Backlot)"""

    bl_idname = "backlot.import_again"
    bl_label = "Import Again"
    key: bpy.props.StringProperty(name="Job key")  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        """Reset the job's import tries; the next ticks place the result."""
        if session is None or not session.import_again(self.key):
            self.report({"ERROR"}, "That job has no result to import.")
            return {"CANCELLED"}
        return {"FINISHED"}


def _draw(self: Any, context: Any) -> None:
    layout, wm = self.layout, context.window_manager
    if session is None:
        return
    row = layout.row()
    symbol = {"connected": "●", "unauthorized": "○", "disconnected": "○"}.get(session.state, "◌")
    row.label(text=f"{symbol} {session.message or session.state}")
    row.operator("backlot.connect", text="", icon="FILE_REFRESH")
    box = layout.box()
    rows = session.service_rows()
    for sym, sid, state in rows:
        box.label(text=f"{sym} {sid}  {state}")
    launches = session.launches.rows()  # backends Backlot can start, when they are not running
    if not rows and not launches:
        box.label(text="No backends." if session.connected else "Backends show once connected.")
    for launch in launches:
        row = box.row()
        row.label(text=f"{launch.symbol} {launch.name}  {launch.state}")
        if launch.startable:
            row.operator("backlot.start_backend", text="Start", icon="PLAY").entry = launch.name
        if launch.message:
            box.label(text=launch.message)
    layout.prop(wm, "backlot_task", text="Task")
    task = session.task(wm.backlot_task)
    if task is not None and getattr(wm, "backlot_form", None) is not None:
        form.draw(layout.column(align=True), wm.backlot_form, task)
    if task is not None and task.name in wf.workflow_tasks(session.workflows):
        form.draw_workflow(layout.column(align=True), wm, getattr(wm, "backlot_form", None), task, session.workflows)
    layout.prop(wm, "backlot_extra", text="Extra")
    layout.prop(wm, "backlot_prompt", text="")
    layout.prop(wm, "backlot_backend", text="Backend")
    row = layout.row(align=True)
    row.operator("backlot.generate")
    row.operator("backlot.generate_selected", text="For Selected")
    for rec in session.book.for_scene(compat.editing_scene(context).name)[:10]:
        row = layout.row()
        row.label(text=f"{rec.label} · {rec.task} · {rec.progress}", icon="ERROR" if rec.message and rec.terminal else "NONE")
        if rec.job and not rec.terminal:
            row.operator("backlot.cancel", text="", icon="X").job = rec.job
        if rec.import_failed:
            row.operator("backlot.import_again", text="Import Again", icon="IMPORT").key = rec.key
        if rec.message and (rec.state != "succeeded" and rec.terminal or rec.import_error
                            or rec.message.startswith("The job finished without")):
            layout.label(text=rec.message)


def _backends(self: Any, context: Any) -> list[tuple[str, str, str]]:
    _backend_items[:] = [("auto", "auto", "let Backlot route the job")] + [
        (sid, f"{sym} {sid}", state) for sym, sid, state in (session.service_rows() if session else [])]
    return _backend_items


_backend_items: list[tuple[str, str, str]] = []


class BACKLOT_PT_sequencer(bpy.types.Panel):
    """Backlot in the Video Sequencer sidebar"""

    bl_label = "Backlot"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Backlot"
    draw = _draw


class BACKLOT_PT_view3d(bpy.types.Panel):
    """Backlot in the 3D viewport sidebar"""

    bl_label = "Backlot"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Backlot"
    draw = _draw


@persistent
def _on_load(*_: Any) -> None:
    """A file was opened: pick up the jobs saved in it."""
    if session is None:
        return
    session.reload(timeline.saved_jobs())
    if not session.connected and session.client is None and prefs().auto_connect:
        connect()


CLASSES = (BacklotPreferences, BACKLOT_OT_connect, BACKLOT_OT_refresh_workflows, BACKLOT_OT_generate, BACKLOT_OT_generate_selected,
           BACKLOT_OT_cancel, BACKLOT_OT_start_backend, BACKLOT_OT_import_again, BACKLOT_PT_sequencer,
           BACKLOT_PT_view3d)


def register() -> None:
    """Register everything; connect at once when the preferences say so."""
    global session, _reload_pending
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    wm = bpy.types.WindowManager
    wm.backlot_task = bpy.props.EnumProperty(name="Task", items=_tasks, update=_task_changed)
    wm.backlot_workflow = bpy.props.EnumProperty(name="Workflow", items=_workflows,
                                                 description="the ComfyUI workflow to run (Default: the task's own)")
    wm.backlot_workflow_file = bpy.props.StringProperty(
        name="Workflow file", subtype="FILE_PATH",
        description="a ComfyUI workflow file (API format) to run instead of the picked one")
    wm.backlot_prompt = bpy.props.StringProperty(name="Prompt", description="what to generate")
    wm.backlot_backend = bpy.props.EnumProperty(name="Backend", items=_backends)
    wm.backlot_extra = bpy.props.StringProperty(
        name="Extra parameters", description='More parameters as a JSON object, such as a ComfyUI workflow\'s own: '
                                             '{"workflow": "my_flow", "seconds": 60}')
    session = AddonSession(timeline.BlenderTimeline())
    _reload_pending = True
    bpy.app.handlers.load_post.append(_on_load)
    bpy.app.timers.register(tick, first_interval=INTERVAL, persistent=True)
    if prefs().auto_connect:
        connect()


def unregister() -> None:
    """Close the connection and remove everything."""
    global session
    if session is not None:
        session.disconnect()
        session = None
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    form.unregister()
    for name in ("backlot_task", "backlot_workflow", "backlot_workflow_file", "backlot_prompt", "backlot_backend",
                 "backlot_extra"):
        if hasattr(bpy.types.WindowManager, name):
            delattr(bpy.types.WindowManager, name)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
