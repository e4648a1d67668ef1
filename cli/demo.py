"""Demo mode: every stand-in backend becomes a launch entry of this run, and Backlot's launcher starts them like
any backend (ready by fingerprint, restarted if one crashes, stopped with Backlot); their URLs are recorded for
this home while it runs."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

from backlot.services.config import Settings, forget_standins, record_standins
from backlot.services.instance import InstanceLock, InstanceLocked
from backlot.services.launch.entry import LaunchEntry
from backlot.standins import demo, launcher

log = logging.getLogger(__name__)


def entries(settings: Settings, speed: float, kinds: tuple[str, ...] = launcher.KINDS,
            ) -> tuple[dict[str, LaunchEntry], dict[str, str]]:
    """The demo's launch entries (one per stand-in this machine can run, on free ports) and the kinds left out."""
    specs, left_out = demo.launch_specs(settings.data_path / "standins", speed, kinds)
    return {name: LaunchEntry.model_validate(spec) for name, spec in specs.items()}, left_out


def stand_in_urls(made: dict[str, LaunchEntry]) -> dict[str, str]:
    """``{stand-in kind: URL}`` (the record ``backlot discover`` and other commands of this home read)."""
    return {name.removeprefix("demo-"): entry.url for name, entry in made.items()}


def run_headless(settings: Settings, out: TextIO = sys.stdout, speed: float = 1.0,
                 kinds: tuple[str, ...] = launcher.KINDS, ready: Callable[[dict[str, str]], None] | None = None) -> int:
    """Run Backlot headless with the stand-ins as launch entries; print ``{"standins": {...}}`` once every one of
    them answers. Stops everything on SIGINT/SIGTERM; a stand-in that cannot start ends the demo (exit 1)."""
    lock = InstanceLock(settings.data_path)
    try:  # before anything starts: a running instance's stand-ins and their record stay untouched
        lock.acquire()
    except InstanceLocked as err:
        print(f"backlot demo: {err}", file=sys.stderr)
        return 2
    try:
        made, left_out = entries(settings, speed, kinds)
        if left_out:
            log.warning("demo: %s", demo.left_out_sentence(left_out))
        with_demo = settings.model_copy(update={"launch": {**settings.launch, **made}})
        with_demo._paths = settings.paths
        return asyncio.run(_run_center(with_demo, made, out, ready, lock))
    finally:
        forget_standins(settings.paths)
        lock.release()


async def _run_center(settings: Settings, made: dict[str, LaunchEntry], out: TextIO,
                      ready: Callable[[dict[str, str]], None] | None, lock: InstanceLock) -> int:
    from backlot.cli.commands import serve

    until = asyncio.Event()
    failed = False
    urls = stand_in_urls(made)

    async def announce(center: Any) -> None:
        nonlocal failed
        views = await center.application.launch_wait(made)
        bad = [v for v in views if v.state != "running"]
        if bad:
            for v in bad:
                print(f"backlot demo: stand-in {v.name} {v.state}: {v.message}", file=sys.stderr)
            failed = True
            until.set()
            return
        await asyncio.to_thread(record_standins, settings.paths, urls)
        out.write(json.dumps({"standins": urls}) + "\n")
        out.flush()
        log.info("demo: %d stand-ins and Backlot ready; Ctrl-C stops them", len(made))
        if ready is not None:
            ready(urls)

    tasks: list[asyncio.Task[None]] = []

    def on_ready(center: Any) -> None:
        tasks.append(asyncio.create_task(announce(center), name="demo-announce"))

    try:
        code = await serve(settings, until, on_ready, lock)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("demo: all stand-ins stopped")
    return 1 if failed and code == 0 else code
