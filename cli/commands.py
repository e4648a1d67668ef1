"""Commands that run in this process: ``discover``, ``tasks`` and the headless instance (``--headless``)."""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import Any, TextIO

from backlot.cli.format import format_table
from backlot.services.application import local
from backlot.services.config import Settings
from backlot.services.control import ControlCenter
from backlot.services.instance import InstanceLock, InstanceLocked

log = logging.getLogger(__name__)


async def discover(settings: Settings, hosts: list[str], urls: list[str], budget: float | None, as_json: bool,
                   out: TextIO = sys.stdout) -> int:
    """One discovery round, printed as a table or JSON."""
    result = await local.discover(settings, hosts=hosts, urls=urls, budget=budget)
    records = sorted(result.records, key=lambda r: (r.kind.value, r.host, r.port))
    if as_json:
        out.write(json.dumps({**result.to_dict(), "services": [r.to_dict() for r in records],
                              "unanswered": [{"url": u, "reason": why} for u, why in result.unanswered]}) + "\n")
        return 0
    late = f", {len(result.timed_out)} did not answer in time" if result.timed_out else ""
    out.write(f"Found {len(records)} service(s) in {result.duration_ms:.0f} ms ({result.candidates} candidates probed{late})\n")
    if records:
        rows = [["ID", "KIND", "PROTOCOL", "VERSION", "FOUND BY", "URL", "NOTE"]]
        for r in records:
            note = "" if r.usable else f"not usable: {r.hint}"
            rows.append([r.id, r.kind.value, r.protocol, r.version or "-", r.found_by.value, r.base_url, note])
        out.write(format_table(rows) + "\n")
    for url, why in result.unanswered:
        out.write(f"Nothing found at {url}: {why}\n")
    return 0


async def serve(settings: Settings, until: asyncio.Event | None = None, ready: Any = None,
                lock: InstanceLock | None = None) -> int:
    """Run the ControlCenter as this home's instance until SIGINT/SIGTERM (or ``until``); ``lock``: already held."""
    if lock is None:
        lock = InstanceLock(settings.data_path)
        try:
            lock.acquire()
        except InstanceLocked as err:
            print(f"backlot: {err}", file=sys.stderr)
            return 2
    center = ControlCenter(settings, serve_api=True)
    stop = until or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await center.start()  # with the API listening, <data>/instance.json tells clients where
        log.info("Backlot running headless with %d service(s), %s; Ctrl-C stops it", len(center.services),
                 center.gpu.reason or "GPU unknown")
        if ready is not None:
            ready(center)
        await _first(stop, center.shutdown_requested)  # Ctrl-C, SIGTERM, the caller, or the API's app.shutdown
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await center.stop()
        lock.release()
        log.info("Backlot stopped")
    return 0


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of the events is set."""
    waits = [asyncio.create_task(e.wait(), name="serve-wait") for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def tasks(settings: Settings, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Every task: its parameters (type, range, default, help), input files and the backend kinds serving it."""
    schema = local.task_schema(settings)
    if as_json:
        out.write(json.dumps(schema) + "\n")
        return 0
    for task in schema["tasks"]:
        inputs = ", ".join(f"{i['name']} ({i['media']}{'' if i['required'] else ', optional'})" for i in task["inputs"])
        prompt = {"needed": "needed", "optional": "optional", "none": "none (leave --prompt out)"}[task["prompt"]]
        out.write(f"{task['name']}: {task['description']}\n  backends: {', '.join(task['backends']) or 'none'}\n"
                  f"  prompt: {prompt}\n  inputs: {inputs or 'none'}\n")
        rows = [["PARAM", "TYPE", "RANGE", "DEFAULT", "HELP"]]
        for p in task["params"]:
            also = f" (also: {', '.join(p['aliases'])})" if p.get("aliases") else ""
            rows.append([p["name"], p["type"], _range(p), "-" if p["default"] is None else json.dumps(p["default"]),
                         p["help"] + also])
        out.write("\n".join("  " + line for line in format_table(rows).splitlines()) + "\n\n")
    out.write("A ComfyUI workflow (--param workflow=NAME) adds the parameters its bindings name.\n")
    return 0


def _range(p: dict[str, Any]) -> str:
    if p.get("choices"):
        return "|".join(p["choices"])
    low, high = p["min"], p["max"]
    if low is None and high is None:
        return "-"
    if high is None:
        return f">= {low:g}"
    return f"<= {high:g}" if low is None else f"{low:g}..{high:g}"
