"""Which models and node classes a ComfyUI server has (``/models/{folder}``, ``/object_info``), and what a job needs."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from backlot.services.backends.comfyui.families import families
from backlot.services.backends.comfyui.fit import ComfyUIInventory, ComfyUINeeds
from backlot.services.backends.comfyui.graph import file_choices, model_folder, required_models_and_nodes
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.comfyui.workflows import Template, TemplateError, load_all, template_for
from backlot.services.http import get_json
from backlot.services.models import ServiceRecord

# Every folder the server lists is read, older names mapped to today's; these hold no model files.
OLD_NAMES = {"clip": "text_encoders", "unet": "diffusion_models"}
NOT_MODELS = frozenset({"custom_nodes", "configs"})


async def inventory(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> ComfyUIInventory:
    """The server's model files per folder and its node classes; folders it does not list stay unknown."""
    listed, _ = await get_json(session, rec.base_url + "/models", timeout=timeout, service=rec.id, max_bytes=64 * 1024)
    models: dict[str, set[str]] = {}
    folders = [f for f in listed if isinstance(f, str) and f not in NOT_MODELS] if isinstance(listed, list) else []
    listings = await asyncio.gather(*(get_json(session, f"{rec.base_url}/models/{folder}", timeout=timeout,
                                                service=rec.id, max_bytes=16 * 1024 * 1024) for folder in folders))
    for folder, (files, _) in zip(folders, listings, strict=True):
        if isinstance(files, list):
            models.setdefault(OLD_NAMES.get(folder, folder), set()).update(str(f) for f in files if isinstance(f, str))
    info, _ = await get_json(session, rec.base_url + "/object_info", timeout=timeout, service=rec.id,
                             max_bytes=128 * 1024 * 1024)
    nodes = frozenset(str(k) for k in info) if isinstance(info, dict) else None
    for key, files in (file_choices(info) if isinstance(info, dict) else {}).items():  # loaders of other folders
        models.setdefault(key, set()).update(files)
    kinds = {"checkpoints": await families(session, rec.base_url, "checkpoints", models.get("checkpoints", ()),
                                           timeout, rec.id, fresh=True)} if "checkpoints" in models else {}
    return ComfyUIInventory({k: frozenset(v) for k, v in models.items()}, nodes, time.time(), kinds)


def pinned(template: Template, params: Mapping[str, Any], options: ComfyUIOptions) -> dict[str, Any]:
    """The job's params plus the ``comfyui_checkpoints`` setting's checkpoint for this template, when the job names none."""
    out = dict(params)
    chosen = options.checkpoints.get(template.name)
    if chosen and "checkpoint" in template.bindings and not out.get("checkpoint"):
        out["checkpoint"] = chosen
    return out


def choice(template: Template, param: str, params: Mapping[str, Any], options: ComfyUIOptions) -> str:
    """Where a model parameter's value comes from, in words for the route."""
    if param in params:
        return "named by the job"
    if options.checkpoints.get(template.name) and param == "checkpoint":
        return "the comfyui_checkpoints setting"
    return f"{template.name}'s default"


def needs(task: str, params: Mapping[str, Any], options: Mapping[str, Any]) -> ComfyUINeeds | None:
    """Models and node classes the job's workflow needs.

    A model the job does not name, in a built-in template made for one model family, is only
    preferred: a server without it may use its one checkpoint of that family. A user's workflow
    needs exactly the files it names. Blocking: it reads the workflow files (built-in, the user's,
    or the file the job names), so the manager asks it off the loop once per job and routing uses
    the answer.
    """
    settings = ComfyUIOptions.of(options)
    try:
        template = template_for(load_all(settings), task, dict(params))
        values = pinned(template, params, settings)
        workflow, _ = template.build(values)
    except TemplateError:
        return None  # validation says what is wrong with the job; routing has nothing to check
    models, nodes = required_models_and_nodes(workflow)
    if template.requires_node:
        nodes.add(template.requires_node)
    prefer: dict[str, set[str]] = {}
    family: dict[str, str] = {}
    chosen: list[tuple[str, str, str]] = []
    for param in template.models:
        for node, inp in template.bindings.get(param, []):
            name = workflow[node]["inputs"].get(inp)
            folder = model_folder(str(workflow[node].get("class_type", "")), inp, name)
            if not folder or not isinstance(name, str):
                continue
            if param in values or param in template.families:  # a file picked by the rules: the route says which
                chosen.append((folder, name, choice(template, param, params, settings)))
            if param not in values and param in template.families and name in models.get(folder, set()):
                models[folder].discard(name)
                prefer.setdefault(folder, set()).add(name)
                family[folder] = template.families[param]
    return ComfyUINeeds({k: frozenset(v) for k, v in models.items() if v}, frozenset(nodes),
                        {k: frozenset(v) for k, v in prefer.items()}, family, tuple(chosen))
