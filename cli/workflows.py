"""``backlot workflows list|show|import``: the ComfyUI workflows a job may name.

``list`` and ``show`` read the files. ``import`` is the core's one import use case: the running instance's
(``workflows.import`` on the socket API, converting a UI-format file with a ComfyUI it knows) when one serves
this home, else the same use case in this process (a short discovery finds a ComfyUI to convert with).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TextIO

from backlot.cli import remote
from backlot.cli.client_commands import exit_for
from backlot.cli.format import format_table
from backlot.cli.refusal import Refusal
from backlot.services.application import local
from backlot.services.application.errors import WorkflowError
from backlot.services.application.views import ImportedWorkflow
from backlot.services.application.workflows import list_workflows, workflow_detail
from backlot.services.config import Settings


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run one ``workflows`` action; 2 with one sentence on stderr when it cannot."""
    try:
        if args.workflows_command == "list":
            return _list(settings, args.json, out)
        if args.workflows_command == "show":
            return _show(settings, args.name, args.json, out)
        return _import(settings, args, out)
    except WorkflowError as err:
        raise Refusal(str(err), 2) from err


def _list(settings: Settings, as_json: bool, out: TextIO) -> int:
    workflows = list_workflows(settings)
    if as_json:
        out.write(json.dumps({"workflows": workflows}) + "\n")
        return 0
    rows = [["NAME", "TASK", "SOURCE", "DESCRIPTION"]]
    rows += [[w["name"], w["task"], w["source"], w["description"]] for w in sorted(workflows, key=lambda w: w["name"])]
    out.write(format_table(rows) + "\n")
    return 0


def _show(settings: Settings, name: str, as_json: bool, out: TextIO) -> int:
    info = workflow_detail(settings, name)
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
    name = args.name or args.file.name.removesuffix(".json")
    done = _through_instance(settings, args.file, name, args) or asyncio.run(
        local.import_workflow(settings, args.file, name=name, task=args.task, force=args.force, server=args.server))
    if args.json:
        out.write(json.dumps(done.to_dict()) + "\n")
        return 0
    how = " (converted from the UI format)" if done.converted else ""
    out.write(f"Imported {done.name}{how} to {done.workflow_path}\n  task: {done.task}"
              f"{' (guessed; change it with --task)' if done.task_guessed else ''}\n")
    out.writelines(f"  {param} -> {', '.join(f'node {n} {i}' for n, i in where)}\n"
                   for param, where in sorted(done.bindings.items()))
    if done.missing:
        out.write(f"  not found: {', '.join(done.missing)} (edit {done.bindings_path.name} to bind them)\n")
    if "prompt" in done.missing:
        out.write(f"  no text input takes the prompt: a job giving --prompt is refused until one is bound in "
                  f"{done.bindings_path.name}\n")
    out.writelines(f"  note: {note}\n" for note in done.notes)
    out.write(f"Run it with --param workflow={done.name}\n")
    return 0


def _through_instance(settings: Settings, path: Path, name: str, args: argparse.Namespace) -> ImportedWorkflow | None:
    """The running instance's import (``workflows.import``), or None when no instance serves this home."""
    home = str(settings.paths.home) if settings.paths.home is not None else None
    inst = remote.find(remote.Home(home))
    if inst is None:
        return None
    params = {"path": str(path.resolve()), "name": name, "task": args.task, "force": args.force, "server": args.server}
    try:
        with inst.client() as client:
            answer = client.call("workflows.import", params)
    except remote.ClientError as err:
        raise Refusal(err.message, exit_for(err)) from err
    return ImportedWorkflow.from_dict(answer)
