"""LaunchController: the Services page's launched backends (cards, buttons, console) and the core's launcher.

The bridge's ``launch_updated`` and ``launch_output`` feed the dashboard and the console panel; the cards' Start,
Stop, Restart and "Restart with --mcp" run as named, kept tasks through the application service. Nothing here
blocks: the console's lines are the core's ring in memory, and config.toml is written off the loop.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from PySide6.QtCore import QObject, Slot

from backlot.app.config_writer import ConfigWriteError, launch_values, write_config
from backlot.services.application.errors import Invalid, NotFound
from backlot.services.control import ControlCenter
from backlot.services.launch.view import LaunchView
from backlot.widgets.dashboard import Dashboard
from backlot.widgets.launch_console import LaunchConsole

log = logging.getLogger(__name__)
Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any] | None"]


class _Bridge(Protocol):
    """The signals of ``app.bridge.Bridge`` this controller listens to."""

    launch_updated: Any
    launch_output: Any


class LaunchController(QObject):
    """Carries the launched backends' cards and console to the core's launcher and back."""

    def __init__(self, center: ControlCenter, dashboard: Dashboard, console: LaunchConsole, spawn: Spawn,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.center, self.app = center, center.application
        self.dashboard, self.console = dashboard, console
        self.spawn = spawn
        console.set_limit(center.settings.console_lines)
        dashboard.launch_requested.connect(self._on_launch_requested)
        dashboard.console_selected.connect(self._on_console_selected)

    def bind(self, bridge: _Bridge) -> None:
        """Follow the launcher's events."""
        bridge.launch_updated.connect(self._on_launch_updated)
        bridge.launch_output.connect(self.console._on_output)
        bridge.launch_output.connect(self.dashboard._on_launch_output)

    def refresh(self, *_: object) -> None:
        """Every launch entry as the core has it now (after the core started, and after the settings changed)."""
        self.dashboard._on_launch_list(self.app.launch_list())
        self._show_state()

    # ----- the core -> the views -----
    @Slot(object)
    def _on_launch_updated(self, view: LaunchView) -> None:
        """An entry changed state; one removed from the settings says so once more as it stops: its card goes."""
        if view.name not in {v.name for v in self.app.launch_list()}:
            self.dashboard._on_launch_removed(view.name)
        else:
            self.dashboard._on_launch(view)
        if view.name == self.console.name:
            self._show_state()

    def _on_console_selected(self, name: str) -> None:
        """Show an entry's console: the lines the core keeps now; new ones follow with ``launch_output``."""
        self.console.set_limit(self.center.settings.console_lines)
        if not name:
            self.console.show_entry("", [])
            return
        try:
            lines = self.app.launch_console(name)
        except (NotFound, Invalid):
            lines = []
        card = self.dashboard.launch_card(name)
        title = f"{card.title} · {name}" if card is not None else name
        self.console.show_entry(name, lines, card.state if card is not None else "", title)

    def _show_state(self) -> None:
        card = self.dashboard.launch_card(self.console.name) if self.console.name else None
        self.console.set_state(card.state if card is not None else "")

    # ----- the cards -> the core -----
    def _on_launch_requested(self, action: str, name: str) -> None:
        self.spawn(f"launch: {action} {name}", self._act(action, name))

    async def _act(self, action: str, name: str) -> None:
        try:
            if action == "start":
                await self.app.launch_start([name])
            elif action == "stop":
                await self.app.launch_stop([name])
            elif action == "restart":
                await self.app.launch_restart([name])
            elif action == "mcp":
                await self.app.launch_restart([name], mcp=True)
                await self._save_entry(name)
            else:
                log.warning("unknown launch action %r for %s", action, name)
        except (Invalid, NotFound) as err:
            log.warning("cannot %s %s: %s", action, name, err)

    async def _save_entry(self, name: str) -> None:
        """Write an entry as the core now has it (Wan2GP with --mcp) to config.toml, so the next start keeps it."""
        entry = self.center.settings.launch.get(name)
        if entry is None or entry.demo:  # the demo's stand-ins are not the user's to save
            return
        path = self.center.settings.paths.config_file
        try:
            await asyncio.to_thread(write_config, path, {"launch": {name: launch_values(entry)}})
        except ConfigWriteError as err:
            log.warning("%s restarted with --mcp, but it could not be saved: %s", name, err)
            return
        log.info("%s now starts with its MCP server (--mcp); saved to %s", name, path)
