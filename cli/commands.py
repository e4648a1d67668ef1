"""Headless command implementations for the CLI: ``discover``, ``--headless``, ``submit``, ``jobs``, ``tasks``."""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from typing import Any, TextIO

from services.config import Settings
from services.connectivity.discovery import Discovery
from services.control import ControlCenter
from services.errors import one_line
from services.events import EventBus, JobUpdated
from services.instance import InstanceLock, InstanceLocked
from services.jobs.manager import JobError
from services.jobs.validate import InvalidJob, schema_json, validate_job
from services.models import Job, JobState

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
    late = f", {len(result.timed_out)} did not answer in time" if result.timed_out else ""
    out.write(f"Found {len(records)} service(s) in {result.duration_ms:.0f} ms ({result.candidates} candidates probed{late})\n")
    if records:
        rows = [["ID", "KIND", "PROTOCOL", "VERSION", "FOUND BY", "URL", "NOTE"]]
        for r in records:
            note = "" if r.usable else f"not usable: {r.hint}"
            rows.append([r.id, r.kind.value, r.protocol, r.version or "-", r.found_by.value, r.base_url, note])
        out.write(format_table(rows) + "\n")
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
    center = ControlCenter(settings)
    stop = until or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await center.start()
        log.info("Backlot running headless with %d service(s), %s; Ctrl-C stops it", len(center.services),
                 center.gpu.reason or "GPU unknown")
        if ready is not None:
            ready(center)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await center.stop()
        lock.release()
        log.info("Backlot stopped")
    return 0


def parse_params(items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs as text; the task schema gives them their types (``services.jobs.validate``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidJob(f"--param {item!r} is not KEY=VALUE")
        out[key.strip()] = raw
    return out


def _progress_line(job: Job) -> str:
    st = job.status
    frac = f"{st['fraction'] * 100:3.0f}% " if st.get("fraction") is not None else ""
    step = f" step {st['step']}/{st['total']}" if st.get("step") is not None and st.get("total") else ""
    return f"  {frac}{st.get('code', '')}: {st.get('message', '')}{step}"


async def submit(settings: Settings, task: str, prompt: str, params: list[str], inputs: list[str], backend: str | None,
                 as_json: bool, out: TextIO = sys.stdout) -> int:
    """Submit one job and follow it to the end (this process runs it: no socket API instance to hand it to)."""
    try:  # bad input is refused before anything starts or is written
        valid = await validate_job(settings, task, parse_params(params), inputs)
    except InvalidJob as err:
        print(f"backlot: {err}", file=sys.stderr)
        return 2
    lock = InstanceLock(settings.data_path)
    try:  # only the lock's holder may recover or run other jobs; beside a running instance this is a guest
        lock.acquire()
        owner = True
    except InstanceLocked:
        owner = False
    center = ControlCenter(settings, run_queue=owner)
    try:
        await center.start()
        job = await center.jobs.submit(task, prompt, valid.params, [str(p) for p in valid.inputs], backend or "auto",
                                       client="cli")
        if not as_json:
            out.write(f"job #{job.seq} {job.id}: {task} queued\nroute: {job.route.get('explanation', '')}\n")
            out.flush()
        last: dict[str, Any] = {"at": 0.0, "line": ""}

        def show(event: JobUpdated) -> None:
            line = _progress_line(event.job)
            if event.job.id == job.id and not as_json and line != last["line"] and time.monotonic() - last["at"] > 0.5:
                last["at"], last["line"] = time.monotonic(), line
                out.write(line + "\n")
                out.flush()

        unsub = center.bus.subscribe(show, JobUpdated)
        try:
            final = await center.jobs.wait(job.id)
        finally:
            unsub()
    except JobError as err:
        print(f"backlot: {err}", file=sys.stderr)
        return 2 if err.code in ("invalid", "unknown_job") else 3
    finally:
        await center.stop()
        if owner:
            lock.release()
    if as_json:
        out.write(json.dumps(final.to_dict()) + "\n")
    else:
        out.write(f"{final.state.value}: {one_line(str(final.status.get('message', '')))}\n")
        if final.routed_to:
            out.write(f"ran on {final.routed_to} ({len(final.attempts)} attempt(s)); route: "
                      f"{final.route.get('explanation', '')}\n")
        for o in final.outputs:
            out.write(f"output: {o['path']} ({o['mime']}, {o['bytes']} bytes)\n")
    return 0 if final.state is JobState.SUCCEEDED else 1


async def jobs(settings: Settings, state: str | None, as_json: bool, limit: int = 50, out: TextIO = sys.stdout) -> int:
    """List job history from this home's store."""
    from services.jobs.store import JobStore

    store = JobStore(settings.data_path / "jobs.sqlite3")
    await store.open()
    try:
        rows = await store.query(state=state, limit=limit)
    finally:
        await store.close()
    if as_json:
        out.write(json.dumps([j.to_dict() for j in rows]) + "\n")
        return 0
    if not rows:
        out.write("no jobs\n")
        return 0
    table = [["#", "ID", "TASK", "STATE", "BACKEND", "CREATED", "MESSAGE"]]
    for j in rows:
        table.append([str(j.seq), j.id, j.task, j.state.value, j.routed_to or "-",
                      time.strftime("%m-%d %H:%M:%S", time.localtime(j.created_at)), one_line(str(j.status.get("message", "")), 60)])
    out.write(format_table(table) + "\n")
    return 0


def tasks(settings: Settings, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Every task: its parameters (type, range, default, help), input files and the backend kinds serving it."""
    schema = schema_json(settings)
    if as_json:
        out.write(json.dumps(schema) + "\n")
        return 0
    for task in schema["tasks"]:
        inputs = ", ".join(f"{i['name']} ({i['media']}{'' if i['required'] else ', optional'})" for i in task["inputs"])
        out.write(f"{task['name']}: {task['description']}\n  backends: {', '.join(task['backends']) or 'none'}\n"
                  f"  inputs: {inputs or 'none'}\n")
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
