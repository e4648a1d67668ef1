"""The user's ComfyUI workflow library: importing a workflow file (API or UI format) with inferred bindings."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from backlot.services.backends.comfyui.convert import EXPORT_API, is_ui_format, ui_to_api
from backlot.services.backends.comfyui.graph import nodes
from backlot.services.backends.comfyui.infer import Inference, infer_bindings, unusable_outputs
from backlot.services.backends.comfyui.workflows import TEMPLATES_DIR, TemplateError
from backlot.services.errors import ServiceError
from backlot.services.http import get_json

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
OBJECT_INFO_MAX = 64 * 1024 * 1024


@dataclass(frozen=True)
class Imported:
    """Where an import wrote the workflow, what it inferred, and whether it was converted from the UI format."""

    name: str
    workflow_path: Path
    bindings_path: Path
    inference: Inference
    converted: bool


def read_workflow(path: Path) -> Any:
    """A workflow file's JSON; TemplateError in one sentence when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TemplateError(f"the workflow file {path} cannot be read: {err}") from err


def to_api(data: Any, object_info: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """The API-format graph of a workflow file's JSON, and whether it was converted from the UI format."""
    if is_ui_format(data):
        if object_info is None:
            raise TemplateError("this is a UI-format workflow; converting it needs a running ComfyUI (--server URL), "
                                f"or {EXPORT_API}")
        return ui_to_api(data, object_info), True
    if isinstance(data, dict) and data and len(list(nodes(data))) == len(data):
        return data, False
    raise TemplateError("this file is not a ComfyUI workflow (neither API nor UI format)")


def import_workflow(data: Any, folder: Path, name: str, task: str | None = None,
                    object_info: Mapping[str, Any] | None = None, origin: str = "", force: bool = False) -> Imported:
    """Write ``<name>.json`` (API format) and its inferred ``<name>.bindings.json`` into ``folder``.

    An existing workflow of that name is replaced only with ``force``; otherwise TemplateError names its file.
    """
    if not NAME.fullmatch(name) or name.endswith(".bindings"):
        raise TemplateError(f"{name!r} is not a usable workflow name (letters, digits, '_', '-', '.')")
    wpath, bpath = folder / f"{name}.json", folder / f"{name}.bindings.json"
    if not force and (wpath.exists() or bpath.exists()):
        raise TemplateError(f"a workflow named {name!r} already exists ({wpath}); pass --force to replace it, "
                            "or --name to import it under another name")
    workflow, converted = to_api(data, object_info)
    unusable = unusable_outputs(workflow)
    if unusable:
        raise TemplateError(unusable)
    found = infer_bindings(workflow, task)
    folder.mkdir(parents=True, exist_ok=True)
    wpath.write_text(json.dumps(workflow, indent=1) + "\n", encoding="utf-8")
    bpath.write_text(json.dumps(found.meta(f"imported from {origin or 'a file'}"), indent=1) + "\n", encoding="utf-8")
    return Imported(name, wpath, bpath, found, converted)


async def fetch_object_info(session: aiohttp.ClientSession, base_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """GET /object_info from a ComfyUI server (every node class with its inputs in widget order)."""
    try:
        body, _ = await get_json(session, base_url.rstrip("/") + "/object_info",
                                 timeout=aiohttp.ClientTimeout(total=timeout), max_bytes=OBJECT_INFO_MAX)
    except ServiceError as err:
        raise TemplateError(f"could not read the node list of {base_url}: {err}") from err
    if not isinstance(body, dict):
        raise TemplateError(f"{base_url} did not answer /object_info like ComfyUI")
    return body


def free_name(filename: str, taken: set[str]) -> str:
    """A workflow name from a file name that no workflow has yet: ``my flow.json`` -> ``my_flow``, then ``my_flow-2``."""
    stem = filename.removesuffix(".json").removesuffix(".bindings")
    base = NOT_NAME.sub("_", stem).lstrip("_.-") or "workflow"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def workflow_names(folder: Path) -> set[str]:
    """Names taken in a user folder and by the built-in templates (a drop never silently replaces one)."""
    names = {p.name.removesuffix(".bindings.json") for p in TEMPLATES_DIR.glob("*.bindings.json")}
    if folder.is_dir():
        names |= {p.name.removesuffix(".bindings.json").removesuffix(".json") for p in folder.glob("*.json")}
    return names
