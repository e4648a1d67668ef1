"""Workflow use cases: list, show, and import a workflow file (the one import every front goes through)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from backlot.services.application.views import ImportedWorkflow
from backlot.services.backends import registry
from backlot.services.backends.comfyui import library
from backlot.services.backends.comfyui.convert import EXPORT_API, is_ui_format
from backlot.services.backends.comfyui.graph import required_models_and_nodes
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.comfyui.workflows import TemplateError, load_all, user_folders
from backlot.services.config import Settings

ObjectInfo = Callable[[], Awaitable[Mapping[str, Any]]]  # a ComfyUI's node list, to convert a UI-format file
NO_COMFYUI = f"no ComfyUI is running to convert it; start ComfyUI, or {EXPORT_API}"


def list_workflows(settings: Settings) -> list[dict[str, Any]]:
    """Every workflow a job may name, per backend kind (reads files: call off the loop)."""
    return registry.workflows(settings.backend_options())


def workflow_detail(settings: Settings, name: str) -> dict[str, Any]:
    """One workflow in full: task, source, bindings, the models and nodes it needs (reads files)."""
    templates = load_all(ComfyUIOptions.of(settings.backend_options()))
    if name not in templates:
        raise TemplateError(f"no workflow named {name!r} (workflows: {', '.join(sorted(templates))})")
    t = templates[name]
    models, classes = required_models_and_nodes(t.workflow)
    return {**t.to_dict(), "bindings": {k: [list(b) for b in v] for k, v in t.bindings.items()},
            "models": {k: sorted(v) for k, v in models.items()}, "nodes": sorted(classes)}


async def import_workflow(settings: Settings, path: Path, object_info: ObjectInfo, *, name: str | None = None,
                          task: str | None = None, force: bool = False) -> ImportedWorkflow:
    """Import a workflow file into the user's workflows folder with inferred bindings; file I/O off the loop.

    No ``name``: the file's name, with a suffix when taken (``my_flow-2``), so nothing is ever replaced.
    A ``name``: exactly that one, and an existing workflow of that name is replaced only with ``force``.
    A UI-format file is converted with ``object_info``'s node list. TemplateError (one sentence) when it cannot.
    """
    folder = user_folders(ComfyUIOptions.of(settings.backend_options()))[0]
    data = await asyncio.to_thread(library.read_workflow, path)
    info = await object_info() if is_ui_format(data) else None
    wanted = name or library.free_name(path.name, set())
    if name is None:
        taken = await asyncio.to_thread(library.workflow_names, folder)
        name, force = library.free_name(path.name, taken), False
    done = await asyncio.to_thread(library.import_workflow, data, folder, name, task, info, str(path), force)
    found = done.inference
    return ImportedWorkflow(done.name, wanted, done.workflow_path, done.bindings_path, done.converted, found.task,
                            task is None, {k: tuple((n, i) for n, i in v) for k, v in found.bindings.items()},
                            tuple(found.missing), tuple(found.notes))


def object_info_from(session: Callable[[], Any], base_url: str) -> ObjectInfo:
    """The node list of the ComfyUI at ``base_url`` (read when a UI-format file needs it)."""

    async def read() -> Mapping[str, Any]:
        return await library.fetch_object_info(session(), base_url)

    return read


__all__ = ["NO_COMFYUI", "ObjectInfo", "TemplateError", "import_workflow", "list_workflows", "object_info_from",
           "workflow_detail"]
