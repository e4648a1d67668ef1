"""Headless command implementations for the CLI: ``discover`` and ``--headless``."""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import TextIO

from services.config import Settings
from services.control import ControlCenter
from services.discovery import Discovery
from services.events import EventBus

log = logging.getLogger(__name__)


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


async def discover(settings: Settings, hosts: list[str], urls: list[str], budget: float | None, as_json: bool,
                   out: TextIO = sys.stdout) -> int:
    """One discovery round, printed as a table or JSON."""
    result = await Discovery(settings, EventBus()).run(hosts=hosts, urls=urls, budget=budget)
    records = sorted(result.records, key=lambda r: (r.kind.value, r.host, r.port))
    if as_json:
        out.write(json.dumps({"services": [r.to_dict() for r in records], "duration_ms": round(result.duration_ms, 1),
                              "candidates": result.candidates, "timed_out": list(result.timed_out)}) + "\n")
        return 0
    out.write(f"Found {len(records)} service(s) in {result.duration_ms:.0f} ms "
              f"({result.candidates} candidates probed{', ' + str(len(result.timed_out)) + ' did not answer in time' if result.timed_out else ''})\n")
    if records:
        rows = [["ID", "KIND", "PROTOCOL", "VERSION", "FOUND BY", "URL", "NOTE"]]
        for r in records:
            note = "" if r.usable else f"not usable: {r.hint}"
            rows.append([r.id, r.kind.value, r.protocol, r.version or "-", r.found_by.value, r.base_url, note])
        out.write(format_table(rows) + "\n")
    return 0


async def headless(settings: Settings) -> int:
    """Run the ControlCenter until SIGINT/SIGTERM."""
    center = ControlCenter(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await center.start()
        log.info("Backlot running headless with %d service(s); Ctrl-C stops it", len(center.services))
        await stop.wait()
    finally:
        await center.stop()
        log.info("Backlot stopped")
    return 0
