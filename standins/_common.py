"""Conventions shared by every stand-in process (standard library only)."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

READY_PREFIX = "BACKLOT-STANDIN-READY "

DEFAULT_PORTS = {
    "comfyui": 8188,
    "wan2gp": 8000,
    "wan2gp-webui": 7860,
    "rvc": 7865,
    "audioldm": 7861,
    "llm": 1234,
}


def common_parser(kind: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every stand-in takes."""
    ap = argparse.ArgumentParser(prog=f"python -m backlot.standins {kind}", description=description)
    ap.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORTS.get(kind, 0),
                    help=f"port to listen on; 0 picks a free one (default {DEFAULT_PORTS.get(kind, 0)})")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="time scale: 2 runs simulated work twice as fast, 0.5 half as fast (default 1)")
    ap.add_argument("--data", type=Path, default=None,
                    help="folder for inputs and outputs (default: a new temporary folder)")
    return ap


def check_speed(ap: argparse.ArgumentParser, speed: float) -> None:
    """Reject a speed that would divide by zero or run time backwards."""
    if not speed > 0:
        ap.error(f"--speed must be greater than 0, got {speed}")


def data_dir(path: Path | None, kind: str) -> Path:
    """The stand-in's working folder, created if needed."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix=f"backlot-{kind}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def url_for(host: str, port: int) -> str:
    """The base URL clients use for a host and port."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def announce(kind: str, host: str, port: int, **extra: object) -> None:
    """Print the one line the launcher waits for: the stand-in is listening."""
    info = {"kind": kind, "url": url_for(host, port), "port": port, "pid": os.getpid(), **extra}
    sys.stdout.write(READY_PREFIX + json.dumps(info) + "\n")
    sys.stdout.flush()
