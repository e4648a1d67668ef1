"""Demo mode: run every stand-in backend, record their URLs for this home, and run Backlot on them."""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from backlot.services.config import Settings, forget_standins, record_standins
from backlot.services.instance import InstanceLock, InstanceLocked
from backlot.standins import demo, launcher

log = logging.getLogger(__name__)


def run_headless(settings: Settings, out: TextIO = sys.stdout, speed: float = 1.0,
                 kinds: tuple[str, ...] = launcher.KINDS, ready: Callable[[dict[str, str]], None] | None = None) -> int:
    """Start the stand-ins, then the ControlCenter on them; print ``{"standins": {...}}`` once all is ready.

    Stops everything on SIGINT/SIGTERM. Runs on the main thread: the stand-ins are told to die with
    the thread that started them, so a killed demo leaves no orphans.
    """
    lock = InstanceLock(settings.data_path)
    try:  # before anything starts: a running instance's stand-ins and their record stay untouched
        lock.acquire()
    except InstanceLocked as err:
        print(f"backlot demo: {err}", file=sys.stderr)
        return 2
    early_stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: early_stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, launcher.StandinProcess] = {}
    try:
        try:
            procs, left_out = demo.spawn(settings.data_path / "standins", speed, kinds)
            if left_out:
                log.warning("demo: %s", demo.left_out_sentence(left_out))
            demo.wait_ready(procs)
        except launcher.StandinError as err:
            print(f"backlot demo: {err}", file=sys.stderr)
            return 1
        urls = {kind: p.url for kind, p in procs.items()}
        record_standins(settings.paths, urls)
        with_standins = settings.model_copy(update={"standins": urls})
        with_standins._paths = settings.paths
        return asyncio.run(_run_center(with_standins, procs, urls, out, early_stop, ready, lock))
    finally:
        forget_standins(settings.paths)
        launcher.stop_all(procs)
        lock.release()
        log.info("demo: all stand-ins stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _run_center(settings: Settings, procs: dict[str, launcher.StandinProcess], urls: dict[str, str],
                      out: TextIO, early_stop: threading.Event, ready: Callable[[dict[str, str]], None] | None,
                      lock: InstanceLock) -> int:
    from backlot.cli.commands import serve

    until = asyncio.Event()
    failed = False

    async def watch() -> None:
        nonlocal failed
        while not until.is_set():
            dead = [k for k, p in procs.items() if not p.alive()]
            if dead:
                log.error("demo: stand-in(s) exited unexpectedly: %s", ", ".join(dead))
                failed = True
                until.set()
            if early_stop.is_set():
                until.set()
            await asyncio.sleep(0.5)

    def on_ready(center: Any) -> None:
        out.write(json.dumps({"standins": urls}) + "\n")
        out.flush()
        log.info("demo: %d stand-ins and Backlot ready; Ctrl-C stops them", len(procs))
        if ready is not None:
            ready(urls)

    watcher = asyncio.create_task(watch(), name="demo-watch")
    try:
        code = await serve(settings, until, on_ready, lock)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return 1 if failed and code == 0 else code
