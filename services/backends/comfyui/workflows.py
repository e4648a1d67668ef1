"""ComfyUI workflow templates (API format) with binding files that say which inputs take which parameter."""
from __future__ import annotations

import copy
import json
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backlot.services.backends.comfyui.graph import nodes
from backlot.services.backends.comfyui.infer import infer_bindings
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.errors import BacklotError
from backlot.services.workflow_ref import is_path
from backlot.services.tasks import SCHEMA, InputSpec, ParamSpec, ParamType, TaskSpec

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "resources" / "workflows"
# The template a task uses on ComfyUI when the job names none.
DEFAULT_FOR_TASK = {"text_to_image": "text_to_image", "quick_preview": "quick_preview",
                    "character_consistency": "character_consistency", "upscale": "upscale",
                    "text_to_video": "text_to_video", "image_to_video": "image_to_video"}
SEED_MAX = 2**32 - 1
# Bindings that take the job's input files, with the input each one is in a task's schema.
INPUT_SLOTS: dict[str, InputSpec] = {
    "input_image": InputSpec("image", "image", False, "the picture the workflow works from"),
    "end_image": InputSpec("end_image", "image", False, "the last frame (first/last-frame workflows)"),
    "input_video": InputSpec("video", "video", False, "the clip the workflow works from")}
# Bindings that are not job parameters: the prompt comes from the job's prompt, files from its inputs.
NOT_PARAMS = ("prompt", *INPUT_SLOTS)
_TYPE_OF: tuple[tuple[type, ParamType], ...] = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"))


class TemplateError(BacklotError):
    """A template is missing, malformed, or a parameter does not fit it."""


class UIFormatFile(TemplateError):
    """A workflow file saved from ComfyUI's UI: it runs once converted with a server's node list."""


@dataclass(frozen=True)
class Template:
    """One workflow plus its bindings: parameter name -> [(node id, input name), ...]."""

    name: str
    task: str
    description: str
    workflow: dict[str, Any]
    bindings: dict[str, list[tuple[str, str]]]
    defaults: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    requires_input: bool = False
    requires_node: str | None = None
    source: str = "built-in"
    families: dict[str, str] = field(default_factory=dict)  # model param -> the family it may be swapped within
    ignores_prompt: bool = False  # its author knows it has no prompt input (a test or utility graph): no refusal

    @property
    def params(self) -> list[str]:
        """Parameters a job may set."""
        return sorted(self.bindings)

    def to_dict(self) -> dict[str, Any]:
        """For the job console and the API."""
        return {"name": self.name, "task": self.task, "description": self.description, "params": self.params,
                "requires_input": self.requires_input, "source": self.source}

    def schema(self) -> TaskSpec:
        """What a job naming this template may set: its bindings, typed by the workflow's values, and its image."""
        params: list[ParamSpec] = []
        for name in self.params:
            if name in NOT_PARAMS:
                continue
            try:
                value = self.current(name)
            except (KeyError, IndexError, TypeError) as err:
                raise TemplateError(f"template {self.name}: binding {name} points at a missing input") from err
            kind = next((t for cls, t in _TYPE_OF if isinstance(value, cls)), None)
            if kind is None:  # bound to a link between nodes: nothing a job can set
                continue
            where = ", ".join(f"node {n} {self.workflow[n].get('class_type', '?')}.{i}" for n, i in self.bindings[name])
            if name == "seed":
                params.append(ParamSpec(name, kind, f"random seed; -1 picks a new one ({where})", -1, -1))
            else:
                params.append(ParamSpec(name, kind, f"{self.name} workflow: {where}", self.defaults.get(name, value)))
        inputs = tuple(replace(INPUT_SLOTS[slot], required=self.requires_input and i == 0,
                               help=f"{INPUT_SLOTS[slot].help} ({self.name})")
                       for i, slot in enumerate(self.input_slots()))
        return TaskSpec(self.task, self.description, tuple(params), inputs,
                        takes_prompt="prompt" in self.bindings or self.ignores_prompt, workflow=self.name)

    def input_slots(self) -> list[str]:
        """The input-file bindings in the order a job's inputs fill them: the task's own input media first."""
        slots = [s for s in INPUT_SLOTS if s in self.bindings]
        task = SCHEMA.get(self.task)
        first = task.inputs[0].media if task is not None and task.inputs else "image"
        return sorted(slots, key=lambda s: INPUT_SLOTS[s].media != first)

    def current(self, param: str) -> Any:
        """The value the workflow has for a parameter now (its first binding)."""
        node, name = self.bindings[param][0]
        return self.workflow[node]["inputs"][name]

    def build(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A fresh workflow with defaults and ``params`` applied; returns (workflow, values used).

        Unknown parameters are ignored (they may be meant for another backend); a seed of -1 or
        none becomes a random one so the same prompt twice is not served from ComfyUI's cache.
        """
        wf = copy.deepcopy(self.workflow)
        values = {**self.defaults, **{k: v for k, v in params.items() if k in self.bindings}}
        if "seed" in self.bindings and int(values.get("seed", -1) if values.get("seed") is not None else -1) < 0:
            values["seed"] = random.randint(0, SEED_MAX)
        for param, value in values.items():
            for node, name in self.bindings[param]:
                if node not in wf or name not in wf[node].get("inputs", {}):
                    raise TemplateError(f"template {self.name}: binding {param} points at missing input {node}.{name}")
                old = wf[node]["inputs"][name]
                wf[node]["inputs"][name] = _coerce(param, value, old)
        return wf, values


def _coerce(param: str, value: Any, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if isinstance(like, int):
            return int(float(value))
        if isinstance(like, float):
            return float(value)
    except (TypeError, ValueError) as err:
        raise TemplateError(f"parameter {param} must be a number, got {value!r}") from err
    return str(value) if isinstance(like, str) else value


def load_templates(folder: Path = TEMPLATES_DIR, source: str = "built-in") -> dict[str, Template]:
    """Every ``<name>.bindings.json`` in ``folder`` with its workflow (``<name>.json`` or the one it names).

    A folder whose JSON files have not changed (names, sizes, modification times) is not read again:
    routing and the window's live route ask for the templates on every change of a job's form.
    """
    try:
        stamp = tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in folder.glob("*.json")
                             for st in (p.stat(),)))
    except OSError:
        stamp = None  # a file vanished while looking: read the folder as it is now
    cached = _read.get((folder, source))
    if stamp is not None and cached is not None and cached[0] == stamp:
        return dict(cached[1])
    out: dict[str, Template] = {}
    for bpath in sorted(folder.glob("*.bindings.json")):
        name = bpath.name[: -len(".bindings.json")]
        try:
            meta = json.loads(bpath.read_text(encoding="utf-8"))
            wpath = folder / meta.get("workflow", f"{name}.json")
            workflow = json.loads(wpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TemplateError(f"template {name} cannot be read: {err}") from err
        out[name] = _template(name, meta, workflow, source if source == "built-in" else str(wpath))
    if stamp is not None:
        with _read_lock:
            _read[(folder, source)] = (stamp, out)
    return dict(out)


_read: dict[tuple[Path, str], tuple[tuple[tuple[str, int, int], ...], dict[str, Template]]] = {}
_read_lock = threading.Lock()  # threads read the folders concurrently (routing, the API, the window)


def _template(name: str, meta: Mapping[str, Any], workflow: dict[str, Any], source: str) -> Template:
    bindings = {k: [(str(n), str(i)) for n, i in v] for k, v in meta.get("bindings", {}).items()}
    return Template(name, meta.get("task", name), meta.get("description", ""), workflow, bindings,
                    meta.get("defaults", {}), tuple(meta.get("models", [])),
                    bool(meta.get("requires_input")), meta.get("requires_node"), source,
                    {str(k): str(v) for k, v in (meta.get("families") or {}).items()}, bool(meta.get("ignores_prompt")))


def user_folders(options: ComfyUIOptions) -> list[Path]:
    """Folders of user workflows: ``<config dir>/workflows`` then the ``workflow_dirs`` setting (later wins)."""
    return ([options.config_dir / "workflows"] if options.config_dir else []) + list(options.workflow_dirs)


def load_all(options: ComfyUIOptions | None = None) -> dict[str, Template]:
    """The built-in templates, overridden by the user's workflows of the same name."""
    out = load_templates()
    for folder in user_folders(options or ComfyUIOptions()):
        if folder.is_dir():
            out.update(load_templates(folder, str(folder)))
    return out


def template_from_file(path: Path, task: str | None = None) -> Template:
    """A workflow file used as is: its ``.bindings.json`` beside it, else bindings inferred from the graph."""
    try:
        workflow = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TemplateError(f"the workflow file {path} cannot be read: {err}") from err
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise UIFormatFile(f"{path.name} is a UI-format workflow; import it with `backlot workflows import` "
                            'or save it from ComfyUI with "Export (API)"')
    if not isinstance(workflow, dict) or not workflow or len(list(nodes(workflow))) != len(workflow):
        raise TemplateError(f"{path.name} is not a ComfyUI workflow (an API-format file maps node ids to "
                            '{"class_type", "inputs"}; save one from ComfyUI with "Export (API)")')
    side = path.with_name(path.name[: -len(".json")] + ".bindings.json") if path.name.endswith(".json") else None
    if side is not None and side.is_file() and side != path:
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TemplateError(f"the bindings file {side} cannot be read: {err}") from err
    else:
        meta = infer_bindings(workflow, task).meta(f"imported from {path}")
    return _template(path.stem, meta, workflow, str(path))


def template_for(templates: dict[str, Template], task: str, params: dict[str, Any]) -> Template:
    """The template a job names (``params.workflow``: a name or a file), else its task's default."""
    name = params.get("workflow") or DEFAULT_FOR_TASK.get(task)
    if name and is_path(str(name)):
        return template_from_file(Path(str(name)).expanduser(), task)
    if not name:
        raise TemplateError(f"ComfyUI has no template for the task {task!r}; name one with --param workflow=NAME "
                            f"(templates: {', '.join(sorted(templates))})")
    if name not in templates:
        raise TemplateError(f"no workflow template named {name!r} (templates: {', '.join(sorted(templates))})")
    return templates[name]
