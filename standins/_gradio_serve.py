"""Serve a Gradio Blocks app the stand-in way (stdlib only, works with Gradio 3 and 6).

Usage, first thing in a stand-in's ``main``: ``stop = install_stop_handlers()``; build the app
(importing gradio is slow, so a SIGTERM may arrive meanwhile); then ``serve(demo, ...)``.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from backlot.standins._common import announce, free_port

log = logging.getLogger(__name__)

# How often a free port chosen for ``--port 0`` may be lost to another process before we give up.
_PORT_ATTEMPTS = 3


def configure_logging() -> None:
    """Log to stderr at INFO, without the HTTP client's line for each of Gradio's own self-checks."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def prepare_environment(data: Path) -> None:
    """Keep Gradio offline and its temporary files inside the stand-in's data folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    # Gradio reads these when components are built, so they must be set before the Blocks exist.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(data / "gradio"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def install_stop_handlers() -> threading.Event:
    """Turn SIGTERM and SIGINT into an event, so the stand-in exits 0 whenever it is stopped."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s received; stopping", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    return stop


def serve(demo: Any, kind: str, host: str, port: int, stop: threading.Event, **launch_kwargs: Any) -> int:
    """Launch ``demo`` on host:port (0 = a free port), announce it once it listens, block until ``stop``."""
    if stop.is_set():  # stopped while the app was being built
        _ignore_further_signals()
        return 0
    attempts = _PORT_ATTEMPTS if port == 0 else 1
    for attempt in range(1, attempts + 1):
        chosen = port or free_port(host or "0.0.0.0")
        try:
            demo.launch(server_name=host, server_port=chosen, prevent_thread_lock=True, share=False,
                        quiet=True, inbrowser=False, **launch_kwargs)
        except OSError as err:
            # Gradio says OSError when the port was taken between free_port() and its bind.
            if attempt == attempts:
                raise
            log.warning("port %s was taken (%s); trying another", chosen, err)
            continue
        break
    # launch() returns only after Gradio has checked that its own URL answers.
    announce(kind, host, chosen)
    try:
        stop.wait()
    finally:
        _ignore_further_signals()
        demo.close()
    return 0


def _ignore_further_signals() -> None:
    # A second SIGTERM (launchers repeat it) landing during interpreter shutdown would otherwise kill
    # us with -15: Python restores the default action of every handled signal when it finalises,
    # but it leaves ignored ones ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
