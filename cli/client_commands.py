"""Commands that talk to the running instance through the socket API: the CLI runs no jobs of its own.

This is the thin client: with an instance running, these commands import only the standard library,
the API client and the formatting helpers (``tests/test_cli_thin.py`` checks it). The instance checks
every job; its refusal keeps the exit code (2 bad input, 3 no backend) and the sentence.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from backlot.blender_addon.client import (INVALID_PARAMS, METHOD_NOT_FOUND, NO_BACKEND, UNKNOWN_JOB, ApiClient,
                                         ClientError, Notification, RpcError)
from backlot.cli import remote
from backlot.cli.format import job_lines, launch_table, progress_line, reply_text, services_table
from backlot.cli.refusal import Refusal
from backlot.cli.remote import Home
from backlot.services.text import one_line
from backlot.services.workflow_ref import is_path

TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")
STOP_WAIT = 60.0  # seconds `backlot stop` waits for the instance to end (its launched backends stop first)


def _err(message: str) -> None:
    print(f"backlot: {message}", file=sys.stderr)


def exit_for(err: ClientError) -> int:
    """Wire codes as exit codes: bad input 2, no backend 3, unknown job 2, anything else 1."""
    return {INVALID_PARAMS: 2, NO_BACKEND: 3, UNKNOWN_JOB: 2}.get(err.code, 1)


def reports_errors(command: Callable[..., int]) -> Callable[..., int]:
    """The one place a client command's failures become a sentence and an exit code (4: not running)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs)
        except remote.NotRunning as err:
            raise Refusal(str(err), 4) from err
        except ClientError as err:
            raise Refusal(err.message, exit_for(err)) from err

    return run


def _job_of(params: Any) -> dict[str, Any] | None:
    """A job.updated notification's job (the job itself, or under ``job``)."""
    if isinstance(params, dict) and isinstance(params.get("job"), dict):
        return dict(params["job"])
    return dict(params) if isinstance(params, dict) and "id" in params else None


def parse_params(items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs as text; the instance gives them their types from the task schema."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise Refusal(f"--param {item!r} is not KEY=VALUE", 2)
        out[key.strip()] = raw
    return out


def _absolute(workflow: Any) -> Any:
    """A workflow named by a file path, made absolute: the instance runs in another folder."""
    return str(Path(str(workflow)).expanduser().resolve()) if is_path(str(workflow)) else workflow


@reports_errors
def submit(home: Home, task: str, prompt: str, params: dict[str, Any], inputs: list[str], backend: str | None,
           wait: bool, as_json: bool, out: TextIO) -> int:
    """Hand the job to the running instance (starting one if needed); ``wait`` follows it to the end."""
    files = [str(Path(p).expanduser().resolve()) for p in inputs]
    params = {k: _absolute(v) if k == "workflow" else v for k, v in params.items()}
    inst = remote.ensure(home, _err)
    with inst.client(topics=["job.updated"] if wait else None) as client:
        job = client.call("jobs.submit", {"task": task, "prompt": prompt, "params": params, "inputs": files,
                                          "backend": backend or "auto", "client": "cli"})
        return _accepted_then(client, job, wait, as_json, out)


@reports_errors
def retry(home: Home, ref: str, wait: bool, as_json: bool, out: TextIO) -> int:
    """Run a job again as a new job; ``wait`` follows the new one to the end, as ``submit --wait`` does."""
    with remote.require(home).client(topics=["job.updated"] if wait else None) as client:
        job = client.call("jobs.retry", {"job": ref})
        return _accepted_then(client, job, wait, as_json, out)


def _accepted_then(client: ApiClient, job: dict[str, Any], wait: bool, as_json: bool, out: TextIO) -> int:
    """Print the accepted job; with ``wait`` follow it and print how it ended (exit 1 unless it succeeded)."""
    if not as_json or not wait:
        _accepted(job, as_json, out)
    if not wait:
        return 0
    try:
        final = _follow(client, job, as_json, out)
    except KeyboardInterrupt:
        _err(f"job #{job['seq']} keeps running; `backlot cancel {job['seq']}` stops it")
        return 130
    try:
        text = reply_text(final) if final["state"] == "succeeded" else None
    except OSError as err:
        _err(f"cannot read the reply in {err.filename}: {err.strerror}")
        text = None
    if as_json:
        out.write(json.dumps({**final, "text": text} if text is not None else final) + "\n")
    else:
        out.write(f"{final['state']}: {one_line(str(final['status'].get('message', '')))}\n")
        for line in job_lines(final, brief=True):
            out.write(line + "\n")
        if text is not None:  # a text job's reply is its result: print it, not only the file it is in
            out.write("\n" + text + ("" if text.endswith("\n") else "\n"))
    return 0 if final["state"] == "succeeded" else 1


def _accepted(job: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(job) + "\n")
    else:
        out.write(f"job #{job['seq']} {job['id']}: {job['task']} queued\n"
                  f"route: {job.get('route', {}).get('explanation', '')}\n")
    out.flush()


def _follow(client: ApiClient, job: dict[str, Any], as_json: bool, out: TextIO) -> dict[str, Any]:
    """Print progress from job.updated notifications until the job ends; returns the final job."""
    last = {"at": 0.0, "line": ""}
    current = client.call("jobs.get", {"job": job["id"]})  # it may have ended before we listened
    while current["state"] not in TERMINAL:
        msg = client.next_message(timeout=30.0)
        if msg is None:
            current = client.call("jobs.get", {"job": job["id"]})  # quiet for a while: ask
            continue
        if not isinstance(msg, Notification) or msg.method != "job.updated":
            if not client.connected:
                raise ClientError("lost the connection to Backlot; the job keeps running there")
            continue
        seen = _job_of(msg.params)
        if seen is None or seen.get("id") != job["id"]:
            continue
        code_changed = (seen.get("status") or {}).get("code") != (current.get("status") or {}).get("code")
        current = seen
        line = progress_line(current)
        # Every change of phase is shown; within one phase (a sampler's steps) at most two lines a second.
        if not as_json and line != last["line"] and (code_changed or time.monotonic() - last["at"] > 0.5):
            last.update(at=time.monotonic(), line=line)
            out.write(line + "\n")
            out.flush()
    return current


def _local_read(home: Home, read: Any) -> Any:
    """Run ``read(settings)`` (a use case of ``services.application.local``) here: no instance runs; this loads the core."""
    import asyncio

    return asyncio.run(read(home.settings()))


@reports_errors
def jobs(home: Home, state: str | None, as_json: bool, limit: int, out: TextIO) -> int:
    """Job history: from the instance when one runs, else straight from the store, read-only."""
    from backlot.cli.format import jobs_table

    inst = remote.find(home)
    if inst is not None:
        with inst.client() as client:
            rows = client.call("jobs.list", {"state": state, "limit": limit})
        rows = rows.get("jobs", rows) if isinstance(rows, dict) else rows
    else:
        from backlot.services.application import local

        rows = [j.to_dict() for j in _local_read(home, lambda s: local.read_jobs(s, state=state, limit=limit))]
    out.write((json.dumps(rows) if as_json else jobs_table(rows)) + "\n")
    return 0


@reports_errors
def show(home: Home, ref: str, as_json: bool, out: TextIO) -> int:
    """One job in full (number or id)."""
    inst = remote.find(home)
    if inst is not None:
        with inst.client() as client:
            job = client.call("jobs.get", {"job": ref})
    else:
        from backlot.services.application import local

        found = _local_read(home, lambda s: local.read_job(s, ref))
        if found is None:
            raise Refusal(f"no job {ref}", 2)
        job = found.to_dict()
    if as_json:
        out.write(json.dumps(job) + "\n")
    else:
        out.write("\n".join(job_lines(job)) + "\n")
    return 0


@reports_errors
def cancel(home: Home, ref: str, as_json: bool, out: TextIO) -> int:
    """Stop a job: one call to the running instance, printed as the job it returns."""
    with remote.require(home).client() as client:
        job = client.call("jobs.cancel", {"job": ref})
    if as_json:
        out.write(json.dumps(job) + "\n")
    else:
        msg = one_line(str(job.get("status", {}).get("message", "")))
        out.write(f"job #{job['seq']} {job['id']}: {job['state']} (cancel: {msg})\n")
    return 0


@reports_errors
def status(home: Home, as_json: bool, out: TextIO) -> int:
    """The instance's pid, API address, token file (never the token), services and job counts."""
    inst = remote.require(home)
    with inst.client() as client:
        services = client.call("services.list")
        services = services.get("services", services) if isinstance(services, dict) else services
        rows = client.call("jobs.list", {"limit": 1000})
        rows = rows.get("jobs", rows) if isinstance(rows, dict) else rows
        try:
            launch = client.call("launch.list")["entries"]
        except RpcError as err:
            if err.code != METHOD_NOT_FOUND:
                raise
            launch = []  # a Backlot from before the launcher
    counts: dict[str, int] = {}
    for j in rows:
        counts[j["state"]] = counts.get(j["state"], 0) + 1
    info = {"pid": inst.pid, "api_host": inst.api_host, "api_port": inst.api_port, "token_file": str(inst.token_file),
            "services": services, "jobs": counts, "launch": launch}
    if as_json:
        out.write(json.dumps(info) + "\n")
        return 0
    out.write(f"Backlot running (pid {inst.pid}), API {inst.api_host}:{inst.api_port}, token in {inst.token_file}\n")
    out.write(services_table(services) + "\n")
    out.write("jobs: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none") + "\n")
    out.write(launch_table(launch) + "\n")
    return 0


@reports_errors
def stop(home: Home, out: TextIO) -> int:
    """Ask the instance to stop and wait until it has (and the backends it launched with it)."""
    inst = remote.require(home)
    with inst.client() as client:
        client.call("app.shutdown")
    deadline = time.monotonic() + STOP_WAIT
    while (inst.alive() or remote.find(home) is not None) and time.monotonic() < deadline:
        time.sleep(0.1)  # the other process releases its lock when it has stopped; nothing to wait on here
    if inst.alive() or remote.find(home) is not None:
        _err(f"Backlot (pid {inst.pid}) is still stopping; `kill {inst.pid}` stops it at once")
        return 1
    out.write(f"stopped Backlot (pid {inst.pid})\n")
    return 0


def addon(output: str | None, out: TextIO) -> int:
    """Write the installable Blender addon zip."""
    from backlot.blender_addon.package import build_zip

    path = build_zip(output or "backlot_addon.zip")
    out.write(f"{path}\nInstall it in Blender 4.2 or later: Edit > Preferences > Get Extensions > the menu at the top "
              "right > Install from Disk…, pick the zip. In 3.4 to 4.1: Edit > Preferences > Add-ons > Install…, pick "
              "the zip, enable \"Backlot\". It reads the token of a Backlot on this computer by default (otherwise set "
              "Token file in its preferences).\n")
    return 0
