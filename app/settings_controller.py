"""SettingsController: opens the settings dialog, writes what it saves to ``config.toml`` and applies it.

The dialog edits plain values; this controller writes the file off the loop (tomlkit keeps the user's comments),
hands the changes to the core's ``apply_settings`` (a new URL is probed, new launch entries appear and removed ones
stop at once), checks LLM keys and answers "Add from a folder…" with the core's preset for that folder.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from pydantic import ValidationError

from backlot.app.config_writer import ConfigWriteError, launch_values, write_config
from backlot.services.application.errors import Invalid
from backlot.services.application.service import backend_kinds
from backlot.services.application.settings_apply import SettingsApplied
from backlot.services.control import ControlCenter
from backlot.services.launch.entry import LaunchEntry
from backlot.widgets.settings_dialog import SECONDS, SettingsDialog

log = logging.getLogger(__name__)
Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any] | None"]


class SettingsController(QObject):
    """Carries the settings dialog's requests to the core and its answers back."""

    applied = Signal(object)  # SettingsApplied, once the core took the saved changes

    def __init__(self, center: ControlCenter, spawn: Spawn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.center = center
        self.app = center.application
        self.spawn = spawn
        self.dialog: SettingsDialog | None = None

    def values(self) -> dict[str, Any]:
        """The settings the dialog edits, as plain values (the demo's own launch entries are not the user's)."""
        s = self.center.settings
        values: dict[str, Any] = {"hosts": list(s.hosts), "urls": list(s.urls), "ports": dict(s.ports),
                                  "api_host": s.api_host, "api_port": s.api_port,
                                  "output_dir": str(s.output_dir) if s.output_dir else "",
                                  "launch": {name: e.model_dump(mode="json") for name, e in s.launch.items()
                                             if not e.demo}}
        values.update({name: getattr(s, name) for name in SECONDS})
        return values

    def open(self, parent: QWidget | None = None) -> SettingsDialog:
        """Open the settings dialog (``open()``, no nested loop); saving writes config.toml through this controller."""
        providers = {k.provider: k.sentence() for k in self.app.key_presence(self.app.key_providers())}
        dialog = SettingsDialog(self.values(), backend_kinds(), providers, parent)
        dialog.save_requested.connect(lambda changes: self.spawn("settings: save", self._save(dialog, changes)))
        dialog.check_key_requested.connect(lambda p, k: self.spawn("settings: check key", self._check(dialog, p, k)))
        dialog.preset_requested.connect(lambda folder: self.spawn("settings: add from a folder",
                                                                  self._preset(dialog, folder)))
        dialog.finished.connect(lambda _result: self._on_dialog_finished(dialog))
        dialog.finished.connect(dialog.deleteLater)
        self.dialog = dialog
        dialog.open()
        return dialog

    def _on_dialog_finished(self, dialog: SettingsDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None  # answers still on their way are dropped

    async def _save(self, dialog: SettingsDialog, changes: dict[str, Any]) -> None:
        """Write config.toml, then apply what the running core can take at once; probe new URLs and start new
        launch entries in the background."""
        path = self.center.settings.paths.config_file
        if changes.get("launch"):  # as config.toml holds them: what differs from the defaults
            try:
                changes = {**changes, "launch": {n: None if e is None else launch_values(LaunchEntry.model_validate(e))
                                                 for n, e in changes["launch"].items()}}
            except ValidationError as err:
                dialog._on_save_failed(f"not saved: {err.errors()[0]['msg']}")
                return
        try:
            await asyncio.to_thread(write_config, path, changes)
        except ConfigWriteError as err:
            dialog._on_save_failed(str(err))
            return
        try:
            applied = self.app.apply_settings(changes)
        except ValueError as err:  # written, but the running core refused it: say so, keep the dialog open
            dialog._on_save_failed(f"Saved to {path}, but not applied: {err}")
            return
        message = applied.sentence(path)
        log.info("settings saved to %s (%s)%s", path, ", ".join(sorted(changes)) or "no changes",
                 f"; restart Backlot to apply {', '.join(applied.restart)}" if applied.restart else "; applied now")
        self.applied.emit(applied)  # the Services page follows the launch entries (removed ones leave)
        dialog._on_saved(message, list(applied.restart))
        if applied.added_urls or applied.removed_urls or applied.rediscover or applied.launch_started:
            self.spawn("settings: probe", self._follow(applied))

    async def _follow(self, applied: SettingsApplied) -> None:
        for found in await self.app.follow_settings(applied):
            for url, why in found.unanswered:
                log.warning("settings: nothing Backlot knows answered at %s: %s", url, why)

    async def _check(self, dialog: SettingsDialog, provider: str, typed: str) -> None:
        result = await self.app.check_key(provider, typed)
        if self.dialog is dialog:
            dialog._on_key_status(provider, result.sentence())

    async def _preset(self, dialog: SettingsDialog, folder: str) -> None:
        """The entry a folder makes (read off the loop by the core), shown in the dialog for editing."""
        try:
            preset = await self.app.launch_preset(folder)
        except Invalid as err:
            if self.dialog is dialog:
                dialog._on_preset_failed(str(err))
            return
        if self.dialog is dialog:
            dialog._on_preset(preset.name, preset.entry.model_dump(mode="json"), preset.note)
