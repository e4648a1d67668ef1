"""How jobs and services read in a terminal: tables, progress lines and a job in full."""
from __future__ import annotations

import time
from typing import Any

from backlot.services.text import one_line


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def progress_line(job: dict[str, Any]) -> str:
    """``  62% progress: node 3 (KSampler) step 12/20``."""
    st = job.get("status") or {}
    frac = f"{st['fraction'] * 100:3.0f}% " if st.get("fraction") is not None else ""
    step = f" step {st['step']}/{st['total']}" if st.get("step") is not None and st.get("total") else ""
    return f"  {frac}{st.get('code', '')}: {one_line(str(st.get('message', '')))}{step}"


def jobs_table(rows: list[dict[str, Any]]) -> str:
    """One line per job, newest first."""
    if not rows:
        return "no jobs"
    table = [["#", "ID", "TASK", "STATE", "BACKEND", "CREATED", "MESSAGE"]]
    for j in rows:
        tried = [a.get("backend") for a in j.get("attempt_log") or []]
        table.append([str(j["seq"]), j["id"], j["task"], j["state"], j.get("routed_to") or (tried[-1] if tried else "-"),
                      time.strftime("%m-%d %H:%M:%S", time.localtime(j["created_at"])),
                      one_line(str((j.get("status") or {}).get("message", "")), 60)])
    return format_table(table)


def services_table(services: list[dict[str, Any]]) -> str:
    """Services with their state."""
    if not services:
        return "no services"
    table = [["ID", "STATE", "VERSION", "LATENCY", "QUEUE", "NOTE"]]
    for s in services:
        latency = f"{s['latency_ms']:.0f} ms" if s.get("latency_ms") is not None else "-"
        note = s.get("hint", "") if not s.get("usable", True) else ""
        table.append([s["id"], str(s.get("state", "unknown")), s.get("version") or "-", latency,
                      str(s.get("queue_depth") if s.get("queue_depth") is not None else "-"), one_line(note, 60)])
    return format_table(table)


def job_lines(job: dict[str, Any], brief: bool = False) -> list[str]:
    """A job in full (``brief``: where it ran and its outputs only)."""
    route = job.get("route") or {}
    lines: list[str] = []
    if not brief:
        st = job.get("status") or {}
        lines += [f"job #{job['seq']} {job['id']}: {job['task']} {job['state']}",
                  f"prompt: {one_line(str(job.get('prompt', '')))}",
                  f"status: {st.get('code', '')}: {one_line(str(st.get('message', '')))}"]
        if job.get("params"):
            lines.append("params: " + ", ".join(f"{k}={v}" for k, v in sorted(job["params"].items())))
    if job.get("routed_to"):
        lines.append(f"ran on {job['routed_to']} ({job.get('attempts', 0)} attempt(s)); route: "
                     f"{route.get('explanation', '')}")
    elif not brief:
        lines.append(f"route: {route.get('explanation', '') or '-'}")
    if not brief:
        for a in job.get("attempt_log") or []:
            lines.append(f"  attempt {a.get('n')}: {a.get('backend')}: {a.get('outcome') or 'running'}"
                         + (f" ({one_line(str(a.get('message', '')), 200)})" if a.get("message") else ""))
        err = job.get("error") or {}
        if err:
            lines.append(f"error: {err.get('code', '')}: {one_line(str(err.get('message', '')))}")
    for o in job.get("outputs") or []:
        lines.append(f"output: {o['path']} ({o['mime']}, {o['bytes']} bytes)")
    if not brief and job.get("task") == "text":
        lines += _text_of(job)
    return lines


def _text_of(job: dict[str, Any]) -> list[str]:
    """A text job's reply, read from its output file, as lines to print."""
    try:
        text = reply_text(job)
    except OSError as err:
        return [f"(cannot read {err.filename}: {err.strerror})"]
    return ["", text] if text is not None else []


def reply_text(job: dict[str, Any]) -> str | None:
    """A text job's reply: its text output file's content (None: no text output; OSError: it cannot be read)."""
    from pathlib import Path

    for o in job.get("outputs") or []:
        if str(o.get("mime", "")).startswith("text/"):
            return Path(o["path"]).read_text(encoding="utf-8")
    return None


# The launch states in the symbols the window's cards and the Blender panel use.
LAUNCH_SYMBOLS = {"running": "●", "starting": "◔", "restarting": "◔", "stopping": "◔", "stopped": "○", "failed": "○",
                  "blocked": "◐"}


def launch_state(view: dict[str, Any]) -> str:
    """``● running``."""
    state = str(view.get("state", ""))
    return f"{LAUNCH_SYMBOLS.get(state, '◌')} {state}"


def launch_line(view: dict[str, Any]) -> str:
    """``comfyui: ● running on port 8188 (pid 4242)``."""
    pid = f" (pid {view['pid']})" if view.get("pid") else ""
    return f"{view['name']}: {launch_state(view)} on port {view['port']}{pid}"


def launch_table(entries: list[dict[str, Any]]) -> str:
    """The launch entries with their state, port, pid, restarts and last exit."""
    if not entries:
        return "no launch entries (`backlot add-backend FOLDER` adds one)"
    table = [["LAUNCH", "STATE", "PORT", "PID", "RESTARTS", "LAST EXIT"]]
    for v in entries:
        last = v.get("last_exit") or {}
        exit_text = "-"
        if last:
            when = time.strftime("%m-%d %H:%M:%S", time.localtime(last["at"])) if last.get("at") else ""
            exit_text = f"{last.get('words', '')}{' (asked)' if last.get('expected') else ''} {when}".strip()
        table.append([v["name"], launch_state(v), str(v["port"]), str(v.get("pid") or "-"), str(v.get("restarts", 0)),
                      exit_text])
    return format_table(table)
