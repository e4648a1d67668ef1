"""Wiring: the bridge's signals to the widgets' slots, the widgets' requests to the shell's actions."""
from __future__ import annotations

from dataclasses import dataclass

from backlot.app.console_controller import ConsoleController
from backlot.app.launch_controller import LaunchController
from backlot.app.shell import Shell
from backlot.app.tray import Tray
from backlot.app.window import MainWindow
from backlot.services.application.service import backend_titles
from backlot.services.config import Settings
from backlot.widgets.api_panel import ApiPanel


@dataclass
class Parts:
    """What one window is made of."""

    shell: Shell
    window: MainWindow
    tray: Tray

    def close(self) -> None:
        """Take the window and the tray down (after ``shell.stop()``)."""
        self.tray.hide()
        self.window.hide()
        self.window.deleteLater()
        self.shell.deleteLater()


def titles() -> dict[str, str]:
    """Each backend kind's display name, from its spec."""
    return backend_titles()


def assemble(settings: Settings, *, owner: bool = True, window: MainWindow | None = None) -> Parts:
    """Build the shell, the window and the tray and connect them (``owner``: this process holds the home).

    ``window``: a shell already on screen to populate (the plain window path shows it before anything loads).
    """
    shell = Shell(settings, serve_api=owner, run_queue=owner)
    settings.paths.config_dir.mkdir(parents=True, exist_ok=True)
    console = ConsoleController.build_console(shell.center)
    api_panel = ApiPanel()
    if window is None:
        window = MainWindow(titles(), str(settings.paths.window_file), console, api_panel)
    else:
        window.populate(titles(), console, api_panel)
    shell.console = ConsoleController(shell.center, console, api_panel, spawn=shell.keeper.spawn, parent=shell)
    shell.console.bind(shell.bridge)
    shell.launches = LaunchController(shell.center, window.dashboard, window.launch_console, shell.keeper.spawn, shell)
    shell.launches.bind(shell.bridge)
    shell.console.settings.applied.connect(shell.launches.refresh)
    window.settings_requested.connect(lambda: shell.console and shell.console.open_settings(window))
    window.workflows_dropped.connect(console.request_import)
    dash_pin = window.dashboard.pin_changed
    dash_pin.connect(console.form.set_backend)
    console.form.changed.connect(lambda _task, _params, backend: window.dashboard.set_pinned(backend))
    tray = Tray(window)
    b, dash, graphs, logs = shell.bridge, window.dashboard, window.graphs, window.log_view
    # core → views
    b.service_changed.connect(dash._on_service)
    b.service_forgotten.connect(dash._on_forgotten)
    b.service_forgotten.connect(graphs._on_forgotten)
    b.health_sampled.connect(dash._on_health)
    b.breaker_changed.connect(dash._on_breaker)
    b.vram_sampled.connect(graphs._on_vram)
    b.latency_sampled.connect(graphs._on_latency)
    b.job_marker.connect(graphs._on_job_marker)
    b.job_finished.connect(tray._on_job_finished)
    b.log_recorded.connect(logs._on_log)
    b.discovery_finished.connect(dash._on_discovery_finished)
    shell.demo_state.connect(dash._on_demo_state)
    for signal in (b.service_changed, b.service_forgotten, b.health_sampled, b.launch_updated):
        signal.connect(window._on_states_changed)
    window.overall_changed.connect(tray._on_state)
    # views → core, through the shell
    dash.discover_requested.connect(shell.discover)
    dash.demo_requested.connect(shell.start_demo)
    dash.open_requested.connect(shell.open_url)
    dash.reconnect_requested.connect(shell.reconnect)
    dash.forget_requested.connect(shell.forget)
    return Parts(shell, window, tray)
