"""Demo mode: run every stand-in backend and record their URLs for this home."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from services.config import Settings, forget_standins, record_standins
from standins import launcher

log = logging.getLogger(__name__)


def run_headless(settings: Settings, out: TextIO = sys.stdout, speed: float = 1.0,
                 kinds: tuple[str, ...] = launcher.KINDS, ready: Callable[[dict[str, str]], None] | None = None) -> int:
    """Start the stand-ins, print ``{"standins": {...}}`` once all listen, stop them all on SIGINT/SIGTERM.

    Runs on the main thread: the stand-ins are told to die with the thread that started them, so a
    killed demo leaves no orphans.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            procs = launcher.start_many(kinds, speed=speed, data_root=settings.data_path / "standins")
        except launcher.StandinError as err:
            print(f"backlot demo: {err}", file=sys.stderr)
            return 1
        urls = {kind: p.url for kind, p in procs.items()}
        try:
            record_standins(settings.paths, urls)
            out.write(json.dumps({"standins": urls}) + "\n")
            out.flush()
            log.info("demo: %d stand-ins ready; Ctrl-C stops them", len(procs))
            if ready is not None:
                ready(urls)
            while not stop.is_set():
                dead = [k for k, p in procs.items() if not p.alive()]
                if dead:
                    log.error("demo: stand-in(s) exited unexpectedly: %s", ", ".join(dead))
                    return 1
                stop.wait(0.5)
            return 0
        finally:
            forget_standins(settings.paths)
            launcher.stop_all(procs)
            log.info("demo: all stand-ins stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
