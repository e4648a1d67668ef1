"""``backlot workflows list|show|import``: the ComfyUI workflows a job may name, read from files (no instance)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

import aiohttp

from cli.format import format_table
from cli.refusal import Refusal
from services.backends.comfyui.convert import is_ui_format
from services.backends.comfyui.graph import required_models_and_nodes
from services.backends.comfyui.library import (
    fetch_object_info,
    import_workflow,
    read_workflow,
)
from services.backends.comfyui.workflows import (
    Template,
    TemplateError,
    load_all,
    user_folders,
)
from services.config import Settings
from services.connectivity.discovery import Discovery
from services.events import EventBus


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run one ``workflows`` action; 2 with one sentence on stderr when it cannot."""
    try:
        if args.workflows_command == "list":
            return _list(settings, args.json, out)
        if args.workflows_command == "show":
            return _show(settings, args.name, args.json, out)
        return _import(settings, args, out)
    except TemplateError as err:
        raise Refusal(str(err), 2) from err


def _list(settings: Settings, as_json: bool, out: TextIO) -> int:
    templates = load_all(settings.backend_options())
    if as_json:
        out.write(json.dumps({"workflows": [{"kind": "comfyui", **t.to_dict()} for t in templates.values()]}) + "\n")
        return 0
    rows = [["NAME", "TASK", "SOURCE", "DESCRIPTION"]]
    rows += [[t.name, t.task, t.source, t.description] for t in sorted(templates.values(), key=lambda t: t.name)]
    out.write(format_table(rows) + "\n")
    return 0


def describe(t: Template) -> dict[str, Any]:
    """One workflow in full, JSON-ready."""
    models, classes = required_models_and_nodes(t.workflow)
    return {**t.to_dict(), "bindings": {k: [list(b) for b in v] for k, v in t.bindings.items()},
            "models": {k: sorted(v) for k, v in models.items()}, "nodes": sorted(classes)}


def _show(settings: Settings, name: str, as_json: bool, out: TextIO) -> int:
    templates = load_all(settings.backend_options())
    if name not in templates:
        raise TemplateError(f"no workflow named {name!r} (workflows: {', '.join(sorted(templates))})")
    info = describe(templates[name])
    if as_json:
        out.write(json.dumps(info) + "\n")
        return 0
    out.write(f"{info['name']}: {info['description']}\n  task: {info['task']}\n  source: {info['source']}\n")
    rows = [["PARAM", "NODE.INPUT"]] + [[k, ", ".join(f"{n}.{i}" for n, i in v)]
                                        for k, v in sorted(info["bindings"].items())]
    out.write("\n".join("  " + line for line in format_table(rows).splitlines()) + "\n")
    models = "; ".join(f"{folder}: {', '.join(files)}" for folder, files in sorted(info["models"].items()))
    out.write(f"  models: {models or 'none'}\n  nodes: {', '.join(info['nodes'])}\n")
    return 0


def _import(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    data = read_workflow(args.file)
    info = asyncio.run(_object_info(settings, args.server)) if is_ui_format(data) else None
    folder = user_folders(settings.backend_options())[0]
    name = args.name or args.file.name.removesuffix(".json")
    done = import_workflow(data, folder, name, args.task, info, str(args.file), force=args.force)
    found = done.inference
    if args.json:
        out.write(json.dumps({"name": done.name, "workflow": str(done.workflow_path), "bindings_file": str(done.bindings_path),
                              "converted": done.converted, "task": found.task, "task_guessed": not args.task,
                              "bindings": {k: [list(b) for b in v] for k, v in found.bindings.items()},
                              "not_found": found.missing, "notes": found.notes}) + "\n")
        return 0
    how = " (converted from the UI format)" if done.converted else ""
    out.write(f"Imported {done.name}{how} to {done.workflow_path}\n  task: {found.task}"
              f"{'' if args.task else ' (guessed; change it with --task)'}\n")
    out.writelines(f"  {param} -> {', '.join(f'node {n} {i}' for n, i in where)}\n" for param, where in sorted(found.bindings.items()))
    if found.missing:
        out.write(f"  not found: {', '.join(found.missing)} (edit {done.bindings_path.name} to bind them)\n")
    if "prompt" in found.missing:
        out.write(f"  no text input takes the prompt: a job giving --prompt is refused until one is bound in "
                  f"{done.bindings_path.name}\n")
    out.writelines(f"  note: {note}\n" for note in found.notes)
    out.write(f"Run it with --param workflow={done.name}\n")
    return 0


async def _object_info(settings: Settings, server: str | None) -> dict[str, Any]:
    if server is None:
        result = await Discovery(settings, EventBus()).run(budget=min(settings.discovery_budget, 3.0))
        found = [r for r in result.records if r.kind.value == "comfyui" and r.usable]
        if not found:
            raise TemplateError("this is a UI-format workflow and no ComfyUI was found to convert it with; "
                                'start one and pass --server URL, or save it with "Export (API)"')
        server = found[0].base_url
    async with aiohttp.ClientSession() as session:
        return await fetch_object_info(session, server)
