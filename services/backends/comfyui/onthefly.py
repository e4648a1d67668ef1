"""``--param workflow=FILE``: the file is read once, when the job is accepted, into a snapshot the job names.

The graph (converted first with a running ComfyUI's node list when it is a UI-format file) goes to
``<data>/converted/<name>-<hash>.json``, with the ``.bindings.json`` beside the original, and the hash
covers both. Checking the job, routing it, running it and a retry all read that snapshot: an edit
of the user's file after acceptance changes nothing, and the user's workflows folder is left alone.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from backlot.services.backends.comfyui.convert import EXPORT_API, is_ui_format, ui_to_api
from backlot.services.backends.comfyui.graph import nodes
from backlot.services.backends.comfyui.library import fetch_object_info, read_workflow
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.comfyui.workflows import TemplateError
from backlot.services.workflow_ref import is_path
from backlot.services.models import ServiceRecord
from backlot.services.tasks import SchemaError

FOLDER = "converted"


async def prepare(task: str, params: Mapping[str, Any], options: Mapping[str, Any], services: Sequence[ServiceRecord],
                  session_for: Callable[[str], aiohttp.ClientSession]) -> dict[str, Any]:
    """The params with a ``workflow`` file replaced by its snapshot (UI format: its conversion); others as they are."""
    name = params.get("workflow")
    if not isinstance(name, str) or not is_path(name):
        return dict(params)
    path = Path(name).expanduser()
    settings = ComfyUIOptions.of(options)
    folder = (settings.data_path or settings.config_dir or Path(".")) / FOLDER
    if Path(os.path.abspath(path)).parent == Path(os.path.abspath(folder)):
        return dict(params)  # already a snapshot (a retry of an accepted job): never read anew into another
    try:
        data = await asyncio.to_thread(read_workflow, path)
    except TemplateError:
        return dict(params)  # checking the params says what is wrong with the file, in one sentence
    if not is_ui_format(data):
        if not isinstance(data, dict) or not data or len(list(nodes(data))) != len(data):
            return dict(params)  # not a workflow: checking the params says so
        graph = data
    else:
        usable = sorted((r for r in services if r.usable), key=lambda r: (not r.present, r.id))
        if not usable:
            raise SchemaError(f"{path.name} is a UI-format workflow and no ComfyUI is running to convert it; "
                              f"start ComfyUI, or {EXPORT_API}")
        try:
            info = await fetch_object_info(session_for(usable[0].id), usable[0].base_url)
            graph = await asyncio.to_thread(ui_to_api, data, info)
        except TemplateError as err:
            raise SchemaError(f"{path.name}: {err}") from err
    try:
        target = await asyncio.to_thread(save, path, graph, folder)
    except OSError as err:
        raise SchemaError(f"cannot write the job's copy of {path.name} in {folder}: {err.strerror or err}") from err
    return {**params, "workflow": str(target)}


def save(source: Path, graph: Mapping[str, Any], folder: Path) -> Path:
    """Write ``graph`` as ``<stem>-<hash>.json`` in ``folder``, with the source's bindings; the same pair, the same file.

    The bindings are written first, so a snapshot's graph is never seen without them.
    """
    text = json.dumps(graph, indent=1, sort_keys=True) + "\n"
    side = source.with_name(source.stem + ".bindings.json")
    bindings = side.read_text(encoding="utf-8") if side.is_file() else None
    digest = hashlib.sha256(text.encode())
    if bindings is not None:  # the job runs graph and bindings together: an edit of either is another snapshot
        digest.update(b"\0" + bindings.encode())
    target = folder / f"{source.stem}-{digest.hexdigest()[:10]}.json"
    folder.mkdir(parents=True, exist_ok=True)
    if bindings is not None:
        _write(target.with_name(target.stem + ".bindings.json"), bindings)
    _write(target, text)
    return target


def _write(target: Path, text: str) -> None:
    """Write atomically (a reader sees the old file or the whole new one)."""
    part = target.with_name(target.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, target)
