"""The backends Backlot launches, from the command line: start, stop, restart, logs and add-backend.

``start``, ``stop``, ``restart`` and ``logs`` are thin clients of the running instance like ``client_commands``
(standard library and the API client only); the instance runs the launch entries and refuses unknown names with
the sentence printed here. ``add-backend`` writes config.toml, so it loads the settings (and tomlkit) itself.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from backlot.blender_addon.client import ApiClient, ClientError, Notification
from backlot.cli import client_commands, remote
from backlot.cli.client_commands import reports_errors
from backlot.cli.format import launch_line, launch_state
from backlot.cli.refusal import Refusal
from backlot.cli.remote import Home

TOPIC = "launch.updated"
SETTLED = ("running", "failed", "blocked", "stopped")  # where a start ends; the rest are on the way
QUIET = 1.0  # seconds without news before asking for the entries again
FOLLOW_EVERY = 0.3  # seconds between looks at a console that `logs -f` follows
STOP_TIMEOUT = 330.0  # a stop waits for each entry's grace period (at most 300 s) before its SIGKILL


def _err(message: str) -> None:
    print(f"backlot: {message}", file=sys.stderr)


def run(args: argparse.Namespace, home: Home, out: TextIO) -> int:
    """Dispatch one of this module's commands."""
    if args.command == "start":
        return start(home, args.names, not args.no_wait, args.json, out)
    if args.command == "restart":
        return restart(home, args.names, args.mcp, not args.no_wait, args.json, out)
    if args.command == "stop":
        return stop(home, args.names, args.json, out)
    if args.command == "logs":
        return logs(home, args.name, args.follow, args.lines, out)
    return add_backend(home, args.folder, args.name, args.kind, args.with_backlot, out)


@reports_errors
def start(home: Home, names: list[str], wait: bool, as_json: bool, out: TextIO) -> int:
    """Start launch entries; ``wait``: until each answers (or fails), one line per entry as it gets there."""
    with remote.require(home).client(topics=[TOPIC] if wait else None) as client:
        views = client.call("launch.start", {"names": names})["entries"]
        return _outcome(client, views, wait, as_json, out)


@reports_errors
def restart(home: Home, names: list[str], mcp: bool, wait: bool, as_json: bool, out: TextIO) -> int:
    """Stop and start launch entries again (``mcp``: a Wan2GP web UI comes back with its MCP server)."""
    with remote.require(home).client(topics=[TOPIC] if wait else None) as client:
        views = client.call("launch.restart", {"names": names, "mcp": mcp}, timeout=STOP_TIMEOUT)["entries"]
        if mcp:  # the instance runs the MCP command now; the next Backlot reads it from config.toml
            from backlot.cli import launch_config

            launch_config.keep_mcp(home, names, sys.stderr if as_json else out)
        return _outcome(client, views, wait, as_json, out)


def _outcome(client: ApiClient, views: list[dict[str, Any]], wait: bool, as_json: bool, out: TextIO) -> int:
    """Print each entry once it has settled (``wait``) or as spawned; exit 1 when one failed, was blocked or ended."""
    try:
        final = _settle(client, views, out if not as_json else None) if wait else views
    except KeyboardInterrupt:
        names = [v["name"] for v in views]
        _err(f"{', '.join(names)} {'keeps' if len(names) == 1 else 'keep'} starting; `backlot logs {names[0]} -f` "
             f"follows it, `backlot stop {' '.join(names)}` stops {'it' if len(names) == 1 else 'them'}")
        return 130
    if as_json:
        out.write(json.dumps({"entries": final}) + "\n")
    elif not wait:
        for view in final:
            out.write(launch_line(view) + "\n")
    bad = [v for v in final if v["state"] != "running" and (wait or v["state"] in ("failed", "blocked"))]
    for view in bad:
        _err(f"{view['name']} {view['state']}: {view['message']}")
    return 1 if bad else 0


def _settle(client: ApiClient, views: list[dict[str, Any]], out: TextIO | None) -> list[dict[str, Any]]:
    """Follow entries until each has settled; prints each line as it does (``out``), returns the final views.

    Each ``launch.updated`` about one of them (or a quiet second) is a cue to read ``launch.list``: a notification
    sent before the start's answer (a restart's "stopped") must not be taken for the outcome.
    """
    latest = {v["name"]: v for v in views}
    printed: set[str] = set()
    while True:
        for name, view in latest.items():
            if view["state"] in SETTLED and name not in printed and out is not None:
                printed.add(name)
                out.write(launch_line(view) + "\n")
                out.flush()
        if all(v["state"] in SETTLED for v in latest.values()):
            return list(latest.values())
        msg = client.next_message(timeout=QUIET)
        if msg is not None and not isinstance(msg, Notification):
            if not client.connected:
                raise ClientError("lost the connection to Backlot; the backends keep starting there")
            continue
        if msg is not None and (msg.method != TOPIC or (msg.params or {}).get("name") not in latest):
            continue
        listed = {v["name"]: v for v in client.call("launch.list")["entries"]}
        for name, view in latest.items():
            latest[name] = listed.get(name) or {**view, "state": "stopped", "message": "removed from the settings"}


def stop(home: Home, names: list[str], as_json: bool, out: TextIO) -> int:
    """Stop launch entries; with no names, Backlot itself (and what it launched with it)."""
    if not names:
        return _stop_backlot(home, out)
    return _stop_entries(home, names, as_json, out)


@reports_errors
def _stop_entries(home: Home, names: list[str], as_json: bool, out: TextIO) -> int:
    with remote.require(home).client() as client:
        views = client.call("launch.stop", {"names": names}, timeout=STOP_TIMEOUT)["entries"]
    if as_json:
        out.write(json.dumps({"entries": views}) + "\n")
        return 0
    for view in views:
        ended = (view.get("last_exit") or {}).get("words")
        out.write(f"{view['name']}: {launch_state(view)}" + (f" ({ended})" if ended else "") + "\n")
    return 0


@reports_errors
def _stop_backlot(home: Home, out: TextIO) -> int:
    inst = remote.require(home)
    with inst.client() as client:
        try:
            entries = client.call("launch.list")["entries"]
        except ClientError:  # a Backlot from before the launcher
            entries = []
    alive = [v for v in entries if v.get("pid")]
    code = client_commands.stop(home, out)
    if code == 0:
        gone = [v["name"] for v in alive if not v.get("keep_running")]
        kept = [v["name"] for v in alive if v.get("keep_running")]
        if gone:
            out.write(f"stopped what it launched: {', '.join(gone)}\n")
        if kept:
            out.write(f"kept running (keep_running; the next Backlot adopts them): {', '.join(kept)}\n")
    return code


@reports_errors
def logs(home: Home, name: str, follow: bool, count: int, out: TextIO) -> int:
    """Print an entry's last ``count`` console lines; ``follow``: then new ones as they come, until Ctrl-C."""
    if count < 0:
        raise Refusal(f"-n must be 0 or more (got {count})", 2)
    with remote.require(home).client() as client:
        got = client.call("launch.console", {"name": name, "since": 0, "limit": max(count, 1)})
        for line in got["lines"][-count:] if count else []:
            out.write(line["text"] + "\n")
        out.flush()
        if not follow:
            return 0
        since = got["next"]
        try:
            while True:
                time.sleep(FOLLOW_EVERY)  # polling another process's console: nothing to wait on instead
                got = client.call("launch.console", {"name": name, "since": since, "limit": 100000})
                for line in got["lines"]:
                    out.write(line["text"] + "\n")
                out.flush()
                since = got["next"]
        except KeyboardInterrupt:
            return 0


def add_backend(home: Home, folder: str, name: str | None, kind: str | None, with_backlot: bool, out: TextIO) -> int:
    """"Add from a folder": the launch entry for a checkout, written to config.toml as ``[launch.NAME]``."""
    from backlot.cli import launch_config

    return launch_config.add(home, Path(folder).expanduser().resolve(), name, kind, with_backlot, out)
