"""WorkflowController: the job console's workflow list and workflow-file imports, carried to the core off the GUI thread.

The list is ``workflows.list``'s (``registry.workflows``, files read in a worker thread). An import goes through
``library.import_file``: a UI-format file is converted with the node list of a running ComfyUI the core knows.
A dropped file never replaces a workflow: a taken name gets a suffix (``my_flow-2``); the status line says so.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from services.backends import registry
from services.backends.comfyui.convert import EXPORT_API
from services.backends.comfyui.library import Imported, fetch_object_info, free_name, import_file
from services.backends.comfyui.probe import KIND as COMFYUI
from services.backends.comfyui.workflows import TemplateError, user_folders
from services.control import ControlCenter
from services.models import ServiceState
from widgets.job_console import JobConsole

log = logging.getLogger(__name__)
Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any] | None"]


def imported_message(done: Imported, wanted: str) -> str:
    """One sentence on an import: name, task, bindings found, what could not be inferred, the bindings file."""
    found = done.inference
    renamed = f" (as {done.name}: {wanted} was taken)" if done.name != wanted else ""
    how = ", converted from the UI format," if done.converted else ""
    binds = ", ".join(sorted(found.bindings)) or "nothing"
    missing = f"; not found: {', '.join(found.missing)}" if found.missing else ""
    missing += "".join(f"; {note}" for note in found.notes)
    return (f"Imported {done.name}{renamed} for {found.task}{how} to {done.workflow_path}: binds {binds}{missing}; "
            f"edit {done.bindings_path} to change what it binds.")


def _wanted(path: Path) -> str:
    return free_name(path.name, set())  # the file's name as a workflow name, before any clash


class WorkflowController:
    """Fills the form's workflow list and imports dropped or picked workflow files."""

    def __init__(self, center: ControlCenter, console: JobConsole, spawn: Spawn) -> None:
        self.center, self.console, self.spawn = center, console, spawn
        console.import_requested.connect(self._on_import_requested)

    def refresh(self, select: tuple[str, str] | None = None) -> None:
        """Read the workflows again (off the loop) and give them to the form; ``select``: (task, name) to pick."""
        self.spawn("console: workflows", self._list(select))

    async def _list(self, select: tuple[str, str] | None) -> None:
        try:
            workflows = await asyncio.to_thread(registry.workflows, self.center.settings.backend_options())
        except TemplateError as err:  # a broken user workflow: the list stays as it was
            log.warning("cannot list the workflows: %s", err)
            return
        self.console.form._on_workflows(workflows)
        if select is not None:
            self.console.form.select_workflow(*select)

    def _on_import_requested(self, paths: list[str]) -> None:
        self.spawn("console: import workflows", self.import_files([Path(p) for p in paths]))

    async def import_files(self, paths: list[Path]) -> list[Imported]:
        """Import each file into the user's workflows folder; the console hears of each, the form lists the last."""
        folder = user_folders(self.center.settings.backend_options())[0]
        done: list[Imported] = []
        for path in paths:
            try:
                one = await import_file(path, folder, self._object_info)
            except (TemplateError, OSError) as err:
                log.info("workflow import of %s failed: %s", path, err)
                self.console._on_import_failed(f"Could not import {path.name}: {_sentence(err)}.")
                continue
            log.info("imported workflow %s from %s to %s", one.name, path, one.workflow_path)
            self.console._on_import_done(imported_message(one, _wanted(path)))
            done.append(one)
        if done:
            await self._list((done[-1].inference.task, done[-1].name))
        return done

    async def _object_info(self) -> Mapping[str, Any]:
        """The node list of the first usable ComfyUI (healthy ones first), to convert a UI-format file."""
        recs = [r for r in self.center.services.values() if r.kind == COMFYUI and r.usable]
        if not recs:
            raise TemplateError(f"it is a UI-format workflow and no ComfyUI is running to convert it; start ComfyUI, "
                                f"or {EXPORT_API}")
        rec = min(recs, key=lambda r: (not self._up(r.id), r.id))
        return await fetch_object_info(self.center.pool.session(rec.id), rec.base_url)

    def _up(self, service_id: str) -> bool:
        health = self.center.health_view(service_id)
        return health is not None and health.state is ServiceState.UP


def _sentence(err: BaseException) -> str:
    text = str(err).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else err.__class__.__name__
