"""Starting the window: one QApplication, one qasync loop, the instance lock, signals, shutdown, ``--screenshot``."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from backlot.app.collector import MainThreadCollector
from backlot.app.early import application
from backlot.app.window import MainWindow
from backlot.services.config import Settings
from backlot.services.instance import InstanceLock, InstanceLocked

log = logging.getLogger(__name__)

SCREENSHOT_SIZE = (1440, 900)


def run_window(settings: Settings, *, demo: bool = False, speed: float = 1.0, screenshot: str | None = None,
               window: MainWindow | None = None) -> int:
    """Open the window (with the stand-ins when ``demo``) until it is closed, Ctrl-C or SIGTERM; the exit code.

    ``window``: the shell already on screen (``app.early.shown_shell``), populated here; else one is made.
    """
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync

    app = application()
    lock = InstanceLock(settings.data_path)
    owner = True
    try:
        lock.acquire()
    except InstanceLocked as err:
        if not screenshot:
            if window is not None:
                window.hide()  # the shell showed before the lock was tried: the dialog replaces it
            print(f"backlot: {err}", file=sys.stderr)
            return _locked_dialog(app, str(err))
        owner = False  # a screenshot beside a running instance watches, but runs no queue and serves no API
    hook = sys.excepthook
    sys.excepthook = _log_uncaught  # an exception in a slot lands in the log view
    loop = qasync.QEventLoop(app)
    loop.set_exception_handler(_log_loop_error)
    collector = MainThreadCollector()
    try:
        with loop:
            return int(loop.run_until_complete(_run(settings, demo, speed, screenshot, owner, window, collector)))
    except RuntimeError as err:
        if "Event loop stopped before Future completed" not in str(err):
            raise
        # Qt ended its event loop under us: the display server went away (X11 "connection broke").
        # The jobs are in the store; the next start re-attaches the running ones.
        print("backlot: the window's display went away, so Backlot stopped; running jobs are picked up at the "
              "next start", file=sys.stderr)
        return 1
    finally:
        collector.stop()
        sys.excepthook = hook
        lock.release()


def _log_uncaught(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
    log.error("unexpected error in the window: %s", err or kind.__name__, exc_info=(kind, err, tb))


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    err = context.get("exception")
    log.error("unexpected error: %s", context.get("message", ""), exc_info=err if isinstance(err, BaseException) else None)


def _locked_dialog(app: Any, message: str) -> int:
    """Another instance holds this home: say so in a non-modal dialog and exit 2 when it is closed."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Warning, "Backlot is already running", f"{message}.",
                      QMessageBox.StandardButton.Close)
    box.finished.connect(app.quit)
    box.open()
    app.exec()  # the application's only loop here: nothing else runs yet
    return 2


async def _run(settings: Settings, demo: bool, speed: float, screenshot: str | None, owner: bool,
               shown: MainWindow | None, collector: MainThreadCollector | None = None) -> int:
    from backlot.app.assemble import assemble

    parts = assemble(settings, owner=owner, window=shown)
    shell, window = parts.shell, parts.window
    shell.speed = speed
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    window.close_requested.connect(stop.set)
    if window.closed:  # closed while the rest loaded: stop at once
        stop.set()
    elif screenshot:
        window.resize(*SCREENSHOT_SIZE)
        window.show()
    elif shown is None:
        window.restore_layout()
        window.show()
    starting = asyncio.create_task(shell.start(demo), name="start")
    if collector is not None:
        starting.add_done_callback(lambda task: _settle(task, collector))
    code = 0
    try:
        if screenshot:
            await starting
            code = await _screenshot(shell, window, Path(screenshot))
        else:
            code = await _until_stopped(starting, stop, shell.center.shutdown_requested)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await shell.stop()
        parts.close()
        log.info("Backlot window closed, core stopped")
    return code


def _settle(started: asyncio.Task[None], collector: MainThreadCollector) -> None:
    """The core is up: what start-up made stays for the process's life, out of the collector's way."""
    if not started.cancelled() and started.exception() is None:
        collector.settle()


async def _until_stopped(starting: asyncio.Task[None], *events: asyncio.Event) -> int:
    """Wait for the window to close, a signal, or the API's shutdown; a failed start ends it with code 2."""
    waits = [asyncio.create_task(e.wait(), name="window-wait") for e in events]
    try:
        await asyncio.wait([starting, *waits], return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and not starting.cancelled() and starting.exception() is not None:
            print(f"backlot: {starting.exception()}", file=sys.stderr)
            return 2
        if starting.done():
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return 0
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def _screenshot(shell: Any, window: Any, path: Path) -> int:
    """After the first discovery and one health round, let the graphs repaint and save the window as a PNG."""
    if not await shell.wait_health_round():
        log.warning("screenshot: not every service answered its first health check in time")
    await asyncio.sleep(1.0)  # the graphs repaint on their timer; the cards' countdowns tick
    image = window.grab()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), "PNG"):
        print(f"backlot: could not write the screenshot to {path}", file=sys.stderr)
        return 2
    print(f"backlot: screenshot saved to {path} ({image.width()}×{image.height()})", file=sys.stderr)
    return 0
