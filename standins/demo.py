"""The demo's backends, one launcher for both fronts (``backlot demo`` and the window's demo).

Every stand-in this machine can run starts on a free port; a kind it cannot run (no Gradio 3
interpreter for RVC and AudioLDM, no ``gradio`` package for the Wan2GP web UI, as in a plain
``pipx install``) is left out with the reason, and the rest still run.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from backlot.standins import launcher

# The ComfyUI stand-in reports a GPU, so the VRAM bar and graph have something to show.
EXTRA = {"comfyui": ["--gpu-name", "RTX 4090 (stand-in)", "--vram-total", "24", "--vram-free", "21",
                     "--job-vram", "5"]}


# The backend kind each stand-in is discovered as (the Wan2GP web UI is Wan2GP, shown as not usable).
SERVICE_KIND = {"wan2gp-webui": "wan2gp"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_specs(data_root: Path, speed: float = 1.0, kinds: tuple[str, ...] = launcher.KINDS,
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Launch entries, in the settings' plain form, for every stand-in this machine can run (each on a free
    port, named ``demo-KIND``); also the kinds left out, with why. Backlot's launcher starts them like any backend."""
    left_out = {kind: why for kind in kinds if (why := launcher.unavailable(kind))}
    pythonpath = os.pathsep.join(filter(None, [str(launcher.IMPORT_ROOT), os.environ.get("PYTHONPATH", "")]))
    specs: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        if kind in left_out:
            continue
        port = _free_port()
        specs[f"demo-{kind}"] = {
            "kind": SERVICE_KIND.get(kind, kind),
            "command": launcher.command_for(kind, port, speed=speed, data=data_root / kind, extra=EXTRA.get(kind)),
            "cwd": str(launcher.IMPORT_ROOT), "env": {"PYTHONPATH": pythonpath, "GRADIO_ANALYTICS_ENABLED": "False"},
            "port": port, "start": "with-backlot", "restart": "on-crash", "ready_timeout": 90.0, "stop_grace": 5.0,
            "demo": True}
    return specs, left_out


def spawn(data_root: Path, speed: float = 1.0, kinds: tuple[str, ...] = launcher.KINDS,
          ) -> tuple[dict[str, launcher.StandinProcess], dict[str, str]]:
    """Spawn each stand-in this machine can run, without waiting; also the kinds left out, with why.

    Call it on the thread that should own them: on Linux they die with it, so a killed demo leaves no orphans.
    """
    left_out = {kind: why for kind in kinds if (why := launcher.unavailable(kind))}
    procs: dict[str, launcher.StandinProcess] = {}
    try:
        for kind in kinds:
            if kind not in left_out:
                procs[kind] = launcher.spawn(kind, 0, speed=speed, data=data_root / kind, extra=EXTRA.get(kind))
    except BaseException:
        launcher.stop_all(procs)
        raise
    return procs, left_out


def wait_ready(procs: dict[str, launcher.StandinProcess], timeout: float = 90.0) -> dict[str, str]:
    """Block until every process listens; their URLs by kind. On a failure all are stopped and StandinError raised."""
    deadline = time.monotonic() + timeout
    try:
        for sp in procs.values():
            sp.wait_ready(max(1.0, deadline - time.monotonic()))
    except BaseException:
        launcher.stop_all(procs)
        raise
    return {kind: p.url for kind, p in procs.items()}


def left_out_sentence(left_out: dict[str, str]) -> str:
    """One line for the log: which kinds the demo runs without, and why."""
    by_reason: dict[str, list[str]] = {}
    for kind, why in left_out.items():
        by_reason.setdefault(why, []).append(kind)
    return "; ".join(f"{' and '.join(kinds)} left out ({why})" for why, kinds in by_reason.items())
