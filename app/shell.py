"""Shell: the app layer between the window and the core. It owns the ControlCenter, the bridge and the tasks."""
from __future__ import annotations

import asyncio
import logging
import time

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices

from backlot.app.bridge import Bridge
from backlot.app.console_controller import ConsoleController
from backlot.app.launch_controller import LaunchController
from backlot.services.keeper import TaskKeeper
from backlot.services.config import Settings, forget_standins, record_standins
from backlot.services.control import ControlCenter
from backlot.services.events import EventBus
from backlot.services.launch.entry import LaunchEntry
from backlot.standins import demo

log = logging.getLogger(__name__)


class Shell(QObject):
    """Carries out what the window asks (discover, reconnect, forget, open, demo) as tracked tasks."""

    demo_state = Signal(str)  # "starting", "running", "failed: reason"

    def __init__(self, settings: Settings, *, serve_api: bool = True, run_queue: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.bus = EventBus()
        self.bridge = Bridge(self.bus, self)
        self.keeper = TaskKeeper()
        self.center = ControlCenter(settings, self.bus, serve_api=serve_api, run_queue=run_queue)
        self.standins: dict[str, LaunchEntry] = {}  # the demo's launch entries, once asked for
        self.speed = 1.0
        self.started = asyncio.Event()
        self.stopped = False
        self.console: ConsoleController | None = None  # set by assemble once the console is built
        self.launches: LaunchController | None = None  # set by assemble: the Services page's launched backends

    # ----- lifecycle -----
    async def start(self, demo: bool = False) -> None:
        """Start the core, and the stand-ins (demo) beside it; the window is already on screen.

        The core does not wait for the stand-ins: a backend already running is found and shown at once, while
        the dashboard says the demo backends are starting; they are discovered as soon as they listen.
        """
        if demo:
            self.demo_state.emit("starting")  # now, before the core's first discovery can say none was found
        await self.center.start()
        self.center.set_dashboard_visible(True)
        if self.console is not None:
            await self.console.start()
        if self.launches is not None:
            self.launches.refresh()
        self.started.set()
        if demo:
            self.keeper.spawn("start demo", self._start_standins())

    async def stop(self) -> None:
        """Stop our tasks, the core, and the stand-ins we started; unsubscribe the bridge. Twice is harmless."""
        if self.stopped:
            return
        self.stopped = True
        if self.console is not None:
            await self.console.close()
        await self.keeper.cancel_all()
        await self.center.stop()  # the launcher stops the demo's stand-ins with everything else it started
        self.bridge.close()
        if self.standins:
            self.standins = {}
            await asyncio.to_thread(forget_standins, self.settings.paths)
            log.info("demo: all stand-ins stopped")

    async def wait_health_round(self, timeout: float = 20.0) -> bool:
        """Wait until every watched service has had one health check (``--screenshot`` waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.center.application.health().checked:
                return True
            await asyncio.sleep(0.05)
        return False

    # ----- actions (slots connected to the window's signals) -----
    def discover(self) -> None:
        """Run a discovery round now."""
        if self.started.is_set():
            self.keeper.spawn("discover", self.center.application.discover())

    def reconnect(self, service_id: str) -> None:
        """Check a service now, skipping its back-off."""
        if not self.center.application.reconnect(service_id):
            log.warning("%s is no longer watched; run Discover to find it again", service_id)

    def forget(self, service_id: str) -> None:
        """Stop watching a service and drop its card."""
        self.keeper.spawn(f"forget {service_id}", self.center.application.forget_service(service_id))

    def open_url(self, url: str) -> None:
        """Open a service's web UI in the user's browser."""
        if not QDesktopServices.openUrl(QUrl(url)):
            log.warning("could not open %s in a browser", url)

    def start_demo(self) -> None:
        """Start the stand-in backends from the window (as launch entries) and discover them."""
        if self.standins:
            log.info("the demo backends are already running")
            return
        if self.started.is_set():
            self.keeper.spawn("start demo", self._start_standins())

    async def _start_standins(self) -> bool:
        """Add the stand-ins as launch entries and start them; the launcher spawns them on this, the main thread
        (they die with it), and says when each answers."""
        self.demo_state.emit("starting")
        log.info("demo: starting the stand-in backends")
        specs, left_out = demo.launch_specs(self.settings.data_path / "standins", self.speed)
        if left_out:
            log.warning("demo: %s", demo.left_out_sentence(left_out))
        made = {name: LaunchEntry.model_validate(spec) for name, spec in specs.items()}
        self.standins = made
        app = self.center.application
        try:
            await app.launch_add(made)
            views = await app.launch_wait(made)
        except Exception as err:  # a launch refused outright (the launcher is off in a guest window, say)
            views, why = [], str(err)
        else:
            bad = [v for v in views if v.state != "running"]
            why = "; ".join(f"{v.name}: {v.message.splitlines()[0]}" for v in bad)
        if why:
            log.error("demo: %s", why)
            self.demo_state.emit(f"failed: {why}")
            return False
        urls = {name.removeprefix("demo-"): entry.url for name, entry in made.items()}
        await asyncio.to_thread(record_standins, self.settings.paths, urls)
        self.settings.standins = urls
        self.demo_state.emit("running")
        log.info("demo: %d stand-ins ready", len(made))
        return True
