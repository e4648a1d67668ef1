"""``--param workflow=FILE`` with a UI-format file: converted for this job with a running ComfyUI's node list, not saved.

The converted graph goes to ``<data>/converted/<name>-<hash>.json`` (a ``.bindings.json`` beside the
original comes along), and the job names that file: the user's workflows folder is left alone, and a
retry runs the same graph.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from services.backends.comfyui.convert import EXPORT_API, is_ui_format, ui_to_api
from services.backends.comfyui.library import fetch_object_info, read_workflow
from services.backends.comfyui.workflows import TemplateError
from services.workflow_ref import is_path
from services.models import ServiceRecord
from services.tasks import SchemaError

FOLDER = "converted"


async def prepare(task: str, params: Mapping[str, Any], options: Mapping[str, Any], services: Sequence[ServiceRecord],
                  session_for: Callable[[str], aiohttp.ClientSession]) -> dict[str, Any]:
    """The params with a UI-format ``workflow`` file replaced by its API-format conversion; others as they are."""
    name = params.get("workflow")
    if not isinstance(name, str) or not is_path(name):
        return dict(params)
    path = Path(name).expanduser()
    try:
        data = await asyncio.to_thread(read_workflow, path)
    except TemplateError:
        return dict(params)  # checking the params says what is wrong with the file, in one sentence
    if not is_ui_format(data):
        return dict(params)
    usable = sorted((r for r in services if r.usable), key=lambda r: (not r.present, r.id))
    if not usable:
        raise SchemaError(f"{path.name} is a UI-format workflow and no ComfyUI is running to convert it; "
                          f"start ComfyUI, or {EXPORT_API}")
    try:
        info = await fetch_object_info(session_for(usable[0].id), usable[0].base_url)
        graph = await asyncio.to_thread(ui_to_api, data, info)
    except TemplateError as err:
        raise SchemaError(f"{path.name}: {err}") from err
    folder = Path(str(options.get("data_path") or options.get("config_dir") or ".")) / FOLDER
    try:
        target = await asyncio.to_thread(save, path, graph, folder)
    except OSError as err:
        raise SchemaError(f"cannot write the converted workflow in {folder}: {err.strerror or err}") from err
    return {**params, "workflow": str(target)}


def save(source: Path, graph: Mapping[str, Any], folder: Path) -> Path:
    """Write ``graph`` as ``<stem>-<hash>.json`` in ``folder`` (atomically; the same graph gives the same file)."""
    text = json.dumps(graph, indent=1, sort_keys=True) + "\n"
    target = folder / f"{source.stem}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.json"
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, target)
    bindings = source.with_name(source.stem + ".bindings.json")
    if bindings.is_file():  # the user's own bindings name the same node ids as the converted graph
        shutil.copyfile(bindings, target.with_name(target.stem + ".bindings.json"))
    return target
