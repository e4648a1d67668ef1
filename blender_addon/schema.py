"""The task schema as ``tasks.list`` sends it, read leniently into small records the panel builds its form from."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PARAM_TYPES = ("int", "float", "bool", "str", "choice")
_TYPE_ALIASES = {"integer": "int", "number": "float", "boolean": "bool", "string": "str", "text": "str",
                 "enum": "choice", "select": "choice"}
AUDIO_TASKS = ("voice_conversion", "sound_effects", "ambient_audio")
VIDEO_TASKS = ("quick_preview", "text_to_video", "image_to_video", "video_to_video")


@dataclass(frozen=True)
class ParamSpec:
    """One task parameter: name, type (int|float|bool|str|choice), range, default and help."""

    name: str
    type: str = "str"
    default: Any = None
    min: float | None = None
    max: float | None = None
    help: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputSpec:
    """One input file the task takes, with its media type (image, video, audio)."""

    name: str
    media: str = "image"
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A task: its parameters, inputs and the media it produces."""

    name: str
    title: str = ""
    output: str = ""
    params: tuple[ParamSpec, ...] = ()
    inputs: tuple[InputSpec, ...] = field(default_factory=tuple)
    help: str = ""


def _param(name: str, raw: dict[str, Any]) -> ParamSpec:
    kind = str(raw.get("type") or "str").lower()
    kind = _TYPE_ALIASES.get(kind, kind)
    choices = tuple(str(c) for c in raw.get("choices") or raw.get("enum") or ())
    if choices:
        kind = "choice"
    if kind not in PARAM_TYPES:
        kind = "str"
    return ParamSpec(name=name, type=kind, default=raw.get("default"), min=raw.get("min"), max=raw.get("max"),
                     help=str(raw.get("help") or raw.get("description") or ""), choices=choices)


def _named(items: Any) -> list[tuple[str, dict[str, Any]]]:
    """A list of dicts with ``name`` or a dict keyed by name, as (name, dict) pairs."""
    if isinstance(items, dict):
        return [(str(k), v if isinstance(v, dict) else {"default": v}) for k, v in items.items()]
    return [(str(i.get("name")), i) for i in items or () if isinstance(i, dict) and i.get("name")]


def default_output(task: str) -> str:
    """The media a task produces when the schema does not say."""
    if task in AUDIO_TASKS:
        return "audio"
    if task in VIDEO_TASKS:
        return "video"
    return "text" if task == "text" else "image"


def parse_tasks(result: Any) -> list[TaskSpec]:
    """Tasks from a ``tasks.list`` result: a list, or a dict with ``tasks`` (a list or a dict keyed by name)."""
    raw = result.get("tasks", result) if isinstance(result, dict) else result
    tasks: list[TaskSpec] = []
    for name, t in _named(raw):
        inputs = tuple(InputSpec(name=n, media=str(i.get("media") or i.get("type") or "image"),
                                 required=bool(i.get("required", False)), help=str(i.get("help") or ""))
                       for n, i in _named(t.get("inputs")))
        output = t.get("output") or t.get("media") or default_output(name)
        tasks.append(TaskSpec(name=name, title=str(t.get("title") or name.replace("_", " ")),
                              output=str(output if isinstance(output, str) else output.get("media", "")),
                              params=tuple(_param(n, p) for n, p in _named(t.get("params"))
                                           if str(p.get("type", "")).lower() != "object"),  # no form for these
                              inputs=inputs, help=str(t.get("help") or t.get("description") or "")))
    return tasks


def coerce(spec: ParamSpec, value: Any) -> Any:
    """A form value as the type the task expects, clamped to its range."""
    if spec.type == "bool":
        return bool(value)
    if spec.type in ("int", "float"):
        num: float = int(value) if spec.type == "int" else float(value)
        if spec.min is not None:
            num = max(num, spec.min)
        if spec.max is not None:
            num = min(num, spec.max)
        return int(num) if spec.type == "int" else float(num)
    return str(value)


def unset_value(spec: ParamSpec) -> Any:
    """The form's value for a parameter with no default (the backend decides): the range's low end, 0 or ''."""
    if spec.type in ("int", "float"):
        low = spec.min if spec.min is not None else 0
        return int(low) if spec.type == "int" else float(low)
    return {"bool": False, "choice": spec.choices[0] if spec.choices else ""}.get(spec.type, "")


def form_params(specs: tuple[ParamSpec, ...], values: dict[str, Any]) -> dict[str, Any]:
    """The params to submit: each value coerced, leaving out ones with no default still at their unset value."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in values:
            continue
        value = coerce(spec, values[spec.name])
        if spec.default is None and value == unset_value(spec):
            continue  # untouched: let Backlot and the backend choose
        out[spec.name] = value
    return out



def extra_params(text: str) -> dict[str, Any]:
    """Parameters typed as a JSON object (a workflow's own, like ``{"seconds": 60}``); ValueError says why not."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError('Extra parameters must be a JSON object, like {"seconds": 60}.')
    return value
