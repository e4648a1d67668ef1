"""The workflow picker's logic, free of ``bpy``: ``workflows.list`` read into records, the enum items, the params sent.

A ComfyUI task (one a workflow serves) gets a picker: "Default" (the task's own template) plus the workflows for
that task, and a file path that wins over the picker when set. A workflow's bindings may name parameters the
task's schema lacks (``seconds`` of a sleep workflow); the form shows those as text fields, sent when filled in.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

DEFAULT = "_default"  # the enum identifier of "Default": workflow names start with a letter or digit
# Bindings that are not job parameters: the prompt comes from the prompt field, the image from the inputs.
NOT_PARAMS = ("prompt", "input_image")


@dataclass(frozen=True)
class WorkflowSpec:
    """One workflow a job may name: its task, description, the parameters its bindings take, where it lives."""

    name: str
    task: str
    description: str = ""
    params: tuple[str, ...] = ()
    requires_input: bool = False
    source: str = ""
    kind: str = "comfyui"


def parse_workflows(result: Any) -> list[WorkflowSpec]:
    """Workflows from a ``workflows.list`` result (``{"workflows": [...]}`` or the list), sorted by name."""
    raw = result.get("workflows", []) if isinstance(result, dict) else result or []
    out = [WorkflowSpec(name=str(w["name"]), task=str(w.get("task") or ""), description=str(w.get("description") or ""),
                        params=tuple(str(p) for p in w.get("params") or ()), requires_input=bool(w.get("requires_input")),
                        source=str(w.get("source") or ""), kind=str(w.get("kind") or "comfyui"))
           for w in raw if isinstance(w, dict) and w.get("name")]
    return sorted(out, key=lambda w: w.name)


def workflow_tasks(workflows: list[WorkflowSpec]) -> set[str]:
    """The tasks a workflow serves: the ones whose form shows the picker."""
    return {w.task for w in workflows if w.task}


def item_number(name: str) -> int:
    """A stable enum number for a workflow, so a refreshed list keeps the choice (0 is "Default")."""
    return 1 + zlib.crc32(name.encode("utf-8")) % (2**31 - 2)


def enum_items(workflows: list[WorkflowSpec], task: str) -> list[tuple[str, str, str, str, int]]:
    """The picker's items for a task: "Default" first, then its workflows (user ones say where they live)."""
    items = [(DEFAULT, "Default", f"the {task or 'task'}'s own workflow", "NONE", 0)]
    for w in workflows:
        if w.task == task:
            where = "" if w.source in ("", "built-in") else f" ({w.source})"
            items.append((w.name, w.name, f"{w.description}{where}".strip() or w.name, "NONE", item_number(w.name)))
    return items


def find(workflows: list[WorkflowSpec], name: str) -> WorkflowSpec | None:
    """A workflow by name."""
    return next((w for w in workflows if w.name == name), None)


def extra_names(workflow: WorkflowSpec | None, known: set[str]) -> list[str]:
    """Parameters a workflow's bindings take that the task's form has no field for."""
    if workflow is None:
        return []
    return [p for p in workflow.params if p not in known and p not in NOT_PARAMS]


def text_value(text: str) -> Any:
    """A typed-in workflow parameter: a JSON number or boolean when it reads as one, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def workflow_params(chosen: str, file_path: str, extras: dict[str, str]) -> dict[str, Any]:
    """What the picker adds to a job: ``workflow`` (the file path wins over the chosen name) and filled-in extras."""
    out: dict[str, Any] = {}
    if file_path.strip():
        out["workflow"] = file_path.strip()
    elif chosen and chosen != DEFAULT:
        out["workflow"] = chosen
    out.update({k: text_value(v.strip()) for k, v in extras.items() if v.strip()})
    return out
