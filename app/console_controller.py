"""ConsoleController: connects the job console, the settings dialog and the API panel to the ControlCenter.

The widgets never call the core: their signals land here, the work runs as named, kept asyncio tasks (qasync's
loop), and the answers go back to the widgets' ``_on_*`` slots. Files are read and written off the loop.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QImageReader
from PySide6.QtWidgets import QWidget

from backlot.services.keeper import TaskKeeper
from backlot.app.workflow_controller import WorkflowController
from backlot.services.api.token import TokenError, read_token
from backlot.services.application.errors import Invalid, JobError, NotFound
from backlot.services.application.service import backend_kinds
from backlot.services.application.settings_apply import SettingsApplied
from backlot.services.control import ControlCenter
from backlot.services.models import Job
from backlot.services.tasks import SCHEMA, SchemaError
from backlot.widgets.api_panel import ApiPanel
from backlot.widgets.job_console import JobConsole
from backlot.widgets.settings_dialog import SECONDS, SettingsDialog

log = logging.getLogger(__name__)
NEW_SEED = {"seed": -1}  # "Retry with new seed": -1 lets the backend pick one afresh
Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any] | None"]


def read_thumbnail(path: str, edge: int) -> QImage:
    """The image at ``path`` decoded at most ``edge`` pixels on its longer side (a null image when unreadable)."""
    reader = QImageReader(path)
    size = reader.size()
    if size.isValid() and (size.width() > edge or size.height() > edge):
        reader.setScaledSize(size.scaled(edge, edge, Qt.AspectRatioMode.KeepAspectRatio))
    return reader.read()


class _Bridge(Protocol):
    """The signals of ``app.bridge.Bridge`` this controller listens to."""

    job_updated: Any
    job_previewed: Any
    service_changed: Any
    service_forgotten: Any
    health_changed: Any
    breaker_changed: Any


class ConsoleController(QObject):
    """Carries the console's, the settings dialog's and the API panel's requests to the core and back."""

    def __init__(self, center: ControlCenter, console: JobConsole, api_panel: ApiPanel | None = None, *,
                 spawn: Spawn | None = None, open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.center, self.console, self.api_panel = center, console, api_panel
        self.app = center.application  # every request goes through the core's use cases
        self._own = TaskKeeper()  # used when the window's keeper is not handed in (the console on its own)
        self._spawn_with = spawn or self._own.spawn
        self._open_url = open_url
        self.dialog: SettingsDialog | None = None
        self._schema_key: tuple[str, Any] | None = None
        self._explained = 0  # the form change the route shown answers
        form, table, preview = console.form, console.table, console.preview
        form.changed.connect(self._on_form_changed)
        form.submitted.connect(lambda *a: self.spawn("console: submit", self._submit(*a)))
        for view in (table, preview):
            view.retry_requested.connect(lambda job_id: self.spawn("console: retry", self._retry(job_id)))
            view.open_folder_requested.connect(self._on_open_folder)
        preview.retry_new_seed_requested.connect(
            lambda job_id: self.spawn("console: retry with a new seed", self._retry(job_id, NEW_SEED)))
        table.cancel_requested.connect(lambda job_id: self.spawn("console: cancel", self._cancel(job_id)))
        preview.load_requested.connect(lambda *a: self.spawn("console: load preview", self._load(*a)))
        preview.send_requested.connect(lambda *a: self.spawn("console: send to Blender", self._send_to_blender(*a)))
        console.gallery.thumbnail_requested.connect(lambda *a: self.spawn("console: thumbnail", self._thumbnail(*a)))
        self.workflows = WorkflowController(center, console, self.spawn)
        self._api_timer = QTimer(self, interval=1000)
        if api_panel is not None:
            api_panel.copy_token_requested.connect(lambda: self.spawn("console: copy token", self._copy_token()))
        self._api_timer.timeout.connect(self._on_api_tick)  # the panel's clients and the viewer's Send to Blender

    @classmethod
    def build_console(cls, center: ControlCenter, parent: QWidget | None = None) -> JobConsole:
        """A JobConsole for this core's tasks and the backend kinds serving each (from the settings)."""
        return JobConsole(list(SCHEMA.values()), center.settings.task_backends, parent)

    def bind(self, bridge: _Bridge) -> None:
        """Follow the bridge: job snapshots into the table, service changes into the pin list and the route."""
        bridge.job_updated.connect(self._on_job_updated)
        bridge.job_previewed.connect(self._on_job_previewed)
        for signal in (bridge.service_changed, bridge.service_forgotten, bridge.health_changed, bridge.breaker_changed):
            signal.connect(self._on_services_changed)

    async def start(self) -> None:
        """Fill the table from the job history and the pin list from the services (after ``center.start()``)."""
        for job in reversed(await self.app.list_jobs(limit=200)):
            self.console._on_job(job)
        self._on_services_changed()
        self.workflows.refresh()
        self._api_timer.start()
        self._on_api_tick()

    async def close(self) -> None:
        """Stop the API poll and cancel and await every task this controller started."""
        self._api_timer.stop()
        await self._own.cancel_all()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run ``coro`` as a named task that is kept until it ends and logged if it fails."""
        return self._spawn_with(name, coro)

    # ----- the core -> the console -----
    @Slot(object)
    def _on_job_updated(self, job: Job) -> None:
        """A job snapshot from the bridge."""
        self.console._on_job(job)

    @Slot(str, str, int)
    def _on_job_previewed(self, job_id: str, path: str, seq: int) -> None:
        """A running job has a new preview image: read it off the loop when that job is the one shown."""
        if self.console.preview.showing_live(job_id):
            self.spawn("console: load live preview", self._load_live(job_id, path, seq))

    async def _load_live(self, job_id: str, path: str, seq: int) -> None:
        image = await asyncio.to_thread(QImage, path)  # a null image when the job just ended and removed it
        self.console.preview._on_live_image(job_id, image, seq)

    @Slot()
    def _on_services_changed(self, *_: Any) -> None:
        """Services or their health changed: new pin choices, and the route may have changed too."""
        self.console.form._on_services([s.to_dict() for s in self.app.services()])
        self.refresh_route()

    def refresh_route(self) -> None:
        """Ask the router again for the form as it stands."""
        form = self.console.form
        self._on_form_changed(form.task, form.params(), form.backend)

    def _on_form_changed(self, task: str, params: dict[str, Any], backend: str) -> None:
        self._explained += 1
        self.spawn("console: route", self._explain(self._explained, task, params, backend))
        key = (task, params.get("workflow"))
        if key != self._schema_key:  # a workflow adds its bindings' parameters (read from files, off the loop)
            self._schema_key = key
            self.spawn("console: task schema", self._schema(key, params))

    async def _explain(self, generation: int, task: str, params: dict[str, Any], backend: str) -> None:
        """The router's answer for the form (the job's workflow is read off the loop); stale answers are dropped."""
        route = await self.app.explain_route(task, params, backend)
        if generation == self._explained:
            self.console.form._on_route_explained(route.text, not route.no_capable_backend)

    async def _schema(self, key: tuple[str, Any], params: dict[str, Any]) -> None:
        spec, problem = None, ""
        try:
            spec = await self.app.form_schema(key[0], params)  # a UI-format workflow file converted
        except SchemaError as err:
            problem = str(err)
        if key == self._schema_key:  # answers to earlier keystrokes are dropped
            self.console.form._on_schema(key[0], spec, problem)

    # ----- the console -> the core -----
    async def _submit(self, task: str, prompt: str, params: dict[str, Any], inputs: list[str], backend: str) -> None:
        try:
            job = await self.app.submit(task, prompt, params, inputs, backend, client="window")
        except JobError as err:
            self.console.form._on_submit_failed(str(err))
            return
        self._submitted(job)

    def _submitted(self, job: Job) -> None:
        self.console.form._on_submitted(job)
        self.console._on_job(job)
        self.console.table.select_job(job.id)
        self.console.follow()

    async def _cancel(self, job_id: str) -> None:
        try:
            await self.app.cancel(job_id)
        except (JobError, NotFound) as err:
            log.warning("cannot cancel job %s: %s", job_id, err)

    async def _retry(self, job_id: str, params: dict[str, Any] | None = None) -> None:
        try:
            job = await self.app.retry(job_id, client="window", params=params)
        except NotFound:
            log.warning("cannot retry job %s: it is no longer in the history", job_id)
            return
        except JobError as err:
            self.console.form._on_submit_failed(str(err))
            return
        self._submitted(job)

    def _on_open_folder(self, job_id: str) -> None:
        folder = self.app.output_folder(job_id)
        if not self._open_url(QUrl.fromLocalFile(str(folder))):
            log.warning("could not open the output folder %s", folder)

    async def _load(self, job_id: str, path: str, kind: str) -> None:
        preview = self.console.preview
        try:
            if kind == "preview":  # the latest preview of a running job, named by its status
                await self._load_live(job_id, path, 0)
            elif kind == "image":
                image = await asyncio.to_thread(QImage, path)  # QImage (not QPixmap) may be made off the GUI thread
                preview._on_image(job_id, image)
            else:
                preview._on_text(job_id, await asyncio.to_thread(Path(path).read_text, encoding="utf-8", errors="replace"))
        except OSError as err:
            preview._on_load_failed(job_id, f"cannot read {path}: {err.strerror or err}")

    async def _send_to_blender(self, job_id: str, path: str) -> None:
        preview = self.console.preview
        try:
            sent = await self.app.send_to_blender(job_id, path)
        except (NotFound, Invalid) as err:
            preview._on_blender_sent(f"Not sent: {err}")
            return
        preview.set_blender_addons(sent.addons)
        preview._on_blender_sent(sent.sentence)

    async def _thumbnail(self, job_id: str, path: str, edge: int) -> None:
        image = await asyncio.to_thread(read_thumbnail, path, edge)  # decoded at the tile's size, off the GUI thread
        self.console.gallery._on_thumbnail(job_id, image)

    # ----- API panel -----
    def _on_api_tick(self) -> None:
        api = self.center.api
        self.console.preview.set_blender_addons(len(self.app.blender_addons()))
        if self.api_panel is not None:
            if api is None:
                self.api_panel._on_status("", 0, 0, False)
            else:
                self.api_panel._on_status(self.center.settings.api_host, int(api.port), int(api.connections), True)

    async def _copy_token(self) -> None:
        assert self.api_panel is not None
        path = self.center.settings.paths.token_file
        try:
            token = await asyncio.to_thread(read_token, path)
        except FileNotFoundError:
            self.api_panel._on_token_failed(f"no API token yet at {path}; it is made when Backlot serves the API")
            return
        except TokenError as err:
            self.api_panel._on_token_failed(str(err))
            return
        QGuiApplication.clipboard().setText(token)
        self.api_panel._on_token_copied()

    # ----- settings -----
    def open_settings(self, parent: QWidget | None = None) -> SettingsDialog:
        """Open the settings dialog (``open()``, no nested loop); saving writes config.toml through this controller."""
        s = self.center.settings
        values: dict[str, Any] = {"hosts": list(s.hosts), "urls": list(s.urls), "ports": dict(s.ports),
                                  "api_host": s.api_host, "api_port": s.api_port,
                                  "output_dir": str(s.output_dir) if s.output_dir else ""}
        values.update({name: getattr(s, name) for name in SECONDS})
        providers = {k.provider: k.sentence() for k in self.app.key_presence(self.app.key_providers())}
        dialog = SettingsDialog(values, backend_kinds(), providers, parent)
        dialog.save_requested.connect(lambda changes: self.spawn("settings: save", self._save(dialog, changes)))
        dialog.check_key_requested.connect(lambda p, k: self.spawn("settings: check key", self._check(dialog, p, k)))
        dialog.finished.connect(lambda _result: self._on_dialog_finished(dialog))
        dialog.finished.connect(dialog.deleteLater)
        self.dialog = dialog
        dialog.open()
        return dialog

    def _on_dialog_finished(self, dialog: SettingsDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None  # answers still on their way are dropped

    async def _save(self, dialog: SettingsDialog, changes: dict[str, Any]) -> None:
        """Write config.toml, then apply what the running core can take at once; probe new URLs in the background."""
        from backlot.app.config_writer import ConfigWriteError, write_config  # tomlkit: loaded at the first save

        path = self.center.settings.paths.config_file
        try:
            await asyncio.to_thread(write_config, path, changes)
        except ConfigWriteError as err:
            dialog._on_save_failed(str(err))
            return
        applied = self.app.apply_settings(changes)
        message = applied.sentence(path)
        log.info("settings saved to %s (%s)%s", path, ", ".join(sorted(changes)) or "no changes",
                 f"; restart Backlot to apply {', '.join(applied.restart)}" if applied.restart else "; applied now")
        dialog._on_saved(message, list(applied.restart))
        if applied.added_urls or applied.removed_urls or applied.rediscover:
            self.spawn("settings: probe", self._follow(applied))

    async def _follow(self, applied: SettingsApplied) -> None:
        for found in await self.app.follow_settings(applied):
            for url, why in found.unanswered:
                log.warning("settings: nothing Backlot knows answered at %s: %s", url, why)

    async def _check(self, dialog: SettingsDialog, provider: str, typed: str) -> None:
        result = await self.app.check_key(provider, typed)
        if self.dialog is dialog:
            dialog._on_key_status(provider, result.sentence())
