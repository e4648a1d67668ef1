"""WorkflowController: the job console's workflow list and workflow-file imports, carried to the core off the GUI thread.

Both are the core's use cases (``ApplicationService.list_workflows`` and ``import_workflow``, the same import the
socket API's ``workflows.import`` and ``backlot workflows import`` run): a UI-format file is converted with the
node list of a running ComfyUI the core knows. A dropped file never replaces a workflow: a taken name gets a
suffix (``my_flow-2``); the status line says so.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from backlot.services.application.errors import WorkflowError
from backlot.services.application.views import ImportedWorkflow
from backlot.services.control import ControlCenter
from backlot.widgets.job_console import JobConsole

log = logging.getLogger(__name__)
Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any] | None"]


def imported_message(done: ImportedWorkflow) -> str:
    """One sentence on an import: name, task, bindings found, what could not be inferred, the bindings file."""
    renamed = f" (as {done.name}: {done.wanted} was taken)" if done.name != done.wanted else ""
    how = ", converted from the UI format," if done.converted else ""
    binds = ", ".join(sorted(done.bindings)) or "nothing"
    missing = f"; not found: {', '.join(done.missing)}" if done.missing else ""
    missing += "".join(f"; {note}" for note in done.notes)
    return (f"Imported {done.name}{renamed} for {done.task}{how} to {done.workflow_path}: binds {binds}{missing}; "
            f"edit {done.bindings_path} to change what it binds.")


class WorkflowController:
    """Fills the form's workflow list and imports dropped or picked workflow files."""

    def __init__(self, center: ControlCenter, console: JobConsole, spawn: Spawn) -> None:
        self.app, self.console, self.spawn = center.application, console, spawn
        console.import_requested.connect(self._on_import_requested)

    def refresh(self, select: tuple[str, str] | None = None) -> None:
        """Read the workflows again (off the loop) and give them to the form; ``select``: (task, name) to pick."""
        self.spawn("console: workflows", self._list(select))

    async def _list(self, select: tuple[str, str] | None) -> None:
        try:
            workflows = await self.app.list_workflows()
        except WorkflowError as err:  # a broken user workflow: the list stays as it was
            log.warning("cannot list the workflows: %s", err)
            return
        self.console.form._on_workflows(workflows)
        if select is not None:
            self.console.form.select_workflow(*select)

    def _on_import_requested(self, paths: list[str]) -> None:
        self.spawn("console: import workflows", self.import_files([Path(p) for p in paths]))

    async def import_files(self, paths: list[Path]) -> list[ImportedWorkflow]:
        """Import each file into the user's workflows folder; the console hears of each, the form lists the last."""
        done: list[ImportedWorkflow] = []
        for path in paths:
            try:
                one = await self.app.import_workflow(path)
            except (WorkflowError, OSError) as err:
                log.info("workflow import of %s failed: %s", path, err)
                self.console._on_import_failed(f"Could not import {path.name}: {_sentence(err)}.")
                continue
            log.info("imported workflow %s from %s to %s", one.name, path, one.workflow_path)
            self.console._on_import_done(imported_message(one))
            done.append(one)
        if done:
            await self._list((done[-1].task, done[-1].name))
        return done


def _sentence(err: BaseException) -> str:
    text = str(err).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else err.__class__.__name__
