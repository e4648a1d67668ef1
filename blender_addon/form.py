"""The task form: a PropertyGroup built at run time from ``tasks.list``, one property per parameter and input.

For a ComfyUI task the form also holds the workflow picker (``WindowManager.backlot_workflow``, items from
``workflows.list``), a workflow file path, and a text field per parameter a workflow adds to its task.
"""
from __future__ import annotations

import os
from typing import Any

import bpy

from . import workflows as wf
from .schema import ParamSpec, TaskSpec, coerce, form_params, unset_value

_registered: list[type] = []
_built_for: tuple[tuple[TaskSpec, ...], tuple[wf.WorkflowSpec, ...]] = ((), ())


def prop_name(task: str, name: str, is_input: bool = False, workflow: bool = False) -> str:
    """The form property holding one parameter (or input file, or a workflow's own parameter) of a task."""
    return f"{task}__{'in__' if is_input else 'wf__' if workflow else ''}{name}"[:63]


def _number_kwargs(spec: ParamSpec) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if spec.min is not None:
        kw["min"] = spec.min
    if spec.max is not None:
        kw["max"] = spec.max
    return kw


def _prop(spec: ParamSpec) -> Any:
    """A bpy property for one parameter, with its range, default and help."""
    desc, props = spec.help, bpy.props
    if spec.default is None:
        desc = f"{desc} (left at {unset_value(spec)!r}: Backlot or the backend chooses)".strip()
    if spec.type == "int":
        ints = {k: max(-2**31, min(2**31 - 1, int(v))) for k, v in _number_kwargs(spec).items()}  # Blender's int
        start = unset_value(spec) if spec.default is None else spec.default
        return props.IntProperty(name=spec.name, description=desc, default=int(coerce(spec, start)), **ints)
    if spec.type == "float":
        kw = {k: float(v) for k, v in _number_kwargs(spec).items()}
        start = unset_value(spec) if spec.default is None else spec.default
        return props.FloatProperty(name=spec.name, description=desc, default=float(coerce(spec, start)), **kw)
    if spec.type == "bool":
        return props.BoolProperty(name=spec.name, description=desc, default=bool(spec.default))
    if spec.type == "choice":
        items = [(c, c, "") for c in spec.choices]
        default = str(spec.default) if spec.default in spec.choices else spec.choices[0]
        return props.EnumProperty(name=spec.name, description=desc, items=items, default=default)
    return props.StringProperty(name=spec.name, description=desc, default=str(spec.default or ""))


def build(tasks: list[TaskSpec], workflows: list[wf.WorkflowSpec] | None = None) -> None:
    """(Re)register ``WindowManager.backlot_form`` for this schema and workflows; a no-op when both are unchanged."""
    global _built_for
    key = (tuple(tasks), tuple(workflows or ()))
    if key == _built_for and _registered:
        return
    unregister()
    annotations: dict[str, Any] = {}
    for task in tasks:
        for p in task.params:
            annotations[prop_name(task.name, p.name)] = _prop(p)
        for i in task.inputs:
            annotations[prop_name(task.name, i.name, True)] = bpy.props.StringProperty(
                name=i.name, description=f"{i.media} file ({i.help})" if i.help else f"{i.media} file",
                subtype="FILE_PATH")
        for w in workflows or ():
            if w.task == task.name:
                for name in wf.extra_names(w, {p.name for p in task.params}):
                    annotations[prop_name(task.name, name, workflow=True)] = bpy.props.StringProperty(
                        name=name, description=f"a parameter of the workflow {w.name} (empty: the workflow's own value)")
    cls = type("BACKLOT_PG_form", (bpy.types.PropertyGroup,), {"__annotations__": annotations})
    bpy.utils.register_class(cls)
    bpy.types.WindowManager.backlot_form = bpy.props.PointerProperty(type=cls)
    _registered.append(cls)
    _built_for = key


def unregister() -> None:
    """Remove the form class."""
    global _built_for
    if hasattr(bpy.types.WindowManager, "backlot_form"):
        del bpy.types.WindowManager.backlot_form
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    _built_for = ((), ())


def draw(layout: Any, form: Any, task: TaskSpec) -> None:
    """The task's parameters and input files."""
    for p in task.params:
        layout.prop(form, prop_name(task.name, p.name))
    for i in task.inputs:
        layout.prop(form, prop_name(task.name, i.name, True), text=f"{i.name} ({i.media})")


def draw_workflow(layout: Any, wm: Any, form: Any, task: TaskSpec, workflows: list[wf.WorkflowSpec]) -> None:
    """The workflow picker with its refresh button, the workflow file, and the chosen workflow's own parameters."""
    row = layout.row(align=True)
    row.prop(wm, "backlot_workflow", text="Workflow")
    row.operator("backlot.refresh_workflows", text="", icon="FILE_REFRESH")
    layout.prop(wm, "backlot_workflow_file", text="File")
    chosen = wf.find(workflows, wm.backlot_workflow) if not wm.backlot_workflow_file else None
    for name in wf.extra_names(chosen, {p.name for p in task.params}):
        if form is not None and hasattr(form, prop_name(task.name, name, workflow=True)):
            layout.prop(form, prop_name(task.name, name, workflow=True))


def workflow_values(wm: Any, form: Any, task: TaskSpec, workflows: list[wf.WorkflowSpec]) -> dict[str, Any]:
    """What the picker adds to the job: ``workflow`` (a name or an absolute file path) and the filled-in extras."""
    if task.name not in wf.workflow_tasks(workflows):
        return {}
    path = bpy.path.abspath(wm.backlot_workflow_file) if wm.backlot_workflow_file else ""
    chosen = wf.find(workflows, wm.backlot_workflow) if not path else None
    extras = {n: str(getattr(form, prop_name(task.name, n, workflow=True), "") if form else "")
              for n in wf.extra_names(chosen, {p.name for p in task.params})}
    return wf.workflow_params(wm.backlot_workflow, path, extras)


def values(form: Any, task: TaskSpec, active_strip: Any = None) -> tuple[dict[str, Any], list[str]]:
    """The params and input paths to submit; an empty input takes the active strip's file when its media fits."""
    raw = {p.name: getattr(form, prop_name(task.name, p.name)) for p in task.params} if form else {}
    params = form_params(task.params, raw)
    inputs: list[str] = []
    for i in task.inputs:
        path = getattr(form, prop_name(task.name, i.name, True), "") if form else ""
        if not path and active_strip is not None:
            path = strip_file(active_strip, i.media)
        if path:
            inputs.append(bpy.path.abspath(path))
    return params, inputs


def strip_file(strip: Any, media: str) -> str:
    """The file behind a strip when it holds this media (image, video, audio), else ''."""
    if media == "image" and strip.type == "IMAGE" and strip.elements:
        return str(os.path.join(strip.directory, strip.elements[0].filename))
    if media == "video" and strip.type == "MOVIE":
        return str(strip.filepath)
    if media == "audio" and strip.type == "SOUND" and strip.sound:
        return str(strip.sound.filepath)
    return ""
