"""Processes Backlot launches: spawned in their own session with their output in a file, stopped as a
whole tree, and recorded (pid, start time, command) so a later Backlot can adopt or stop them.

Blocking calls (fork, waitpid, /proc reads) run in threads; nothing here touches the event loop.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backlot.services.launch.entry import LaunchEntry

if TYPE_CHECKING:
    import psutil
# psutil (25 ms) loads with the first process looked at, not with the core: the window's start-up need not wait

log = logging.getLogger(__name__)
LOG_KEEP_BYTES = 8 << 20  # a console file is cut back to its end past this size


class LaunchError(Exception):
    """A process could not be started (one sentence)."""


@dataclass(frozen=True)
class Record:
    """What Backlot launched for an entry: enough to recognise the process later."""

    name: str
    pid: int
    create_time: float
    command: list[str]
    host: str
    port: int
    log: str

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Record:
        """From its JSON form; ValueError when a field is missing or of the wrong type."""
        try:
            return cls(str(raw["name"]), int(raw["pid"]), float(raw["create_time"]), [str(a) for a in raw["command"]],
                       str(raw["host"]), int(raw["port"]), str(raw["log"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"a launch record lacks {err}") from err


class Records:
    """``<data>/launched.json``: what is running that Backlot launched, by entry name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # put and drop run in worker threads (asyncio.to_thread), two entries' at once when they end together: one
        # read-change-write at a time, or one's change is lost and the other's temp file is renamed away under it
        self._lock = threading.Lock()

    def load(self) -> dict[str, Record]:
        """Every readable record; an unreadable file is logged and counts as empty."""
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            return {name: Record.from_dict(r) for name, r in dict(raw).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as err:
            log.warning("ignoring %s: %s", self.path, err)
            return {}

    def put(self, record: Record) -> None:
        """Add or replace one record (written atomically)."""
        with self._lock:
            records = self.load()
            records[record.name] = record
            self._write(records)

    def drop(self, name: str) -> None:
        """Forget an entry's record."""
        with self._lock:
            records = self.load()
            if records.pop(name, None) is not None:
                self._write(records)

    def _write(self, records: dict[str, Record]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: asdict(r) for n, r in records.items()}, indent=1), "utf-8")
        os.replace(tmp, self.path)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child when the thread that started it ends (a demo's stand-ins die with Backlot)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(entry: LaunchEntry, log_path: Path, base_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``entry``'s command with stdout and stderr appended to ``log_path``; LaunchError says why not.

    The child leads its own session, so its whole tree is signalled at once, and it outlives Backlot (the next
    one adopts it) — except a demo's stand-in, which dies with the thread that started it: call this on the
    event loop's thread for those."""
    program = entry.command[0]
    cwd = entry.cwd or (Path(program).parent if os.sep in program else None)
    if cwd is not None and not Path(cwd).is_dir():
        raise LaunchError(f"the working folder {cwd} does not exist")
    if os.sep not in program and shutil.which(program) is None:
        raise LaunchError(f"{program!r} is not a program on PATH")
    env = {**(os.environ if base_env is None else base_env), **entry.env}
    env.setdefault("PYTHONUNBUFFERED", "1")  # a Python backend's lines arrive as it prints them
    env.pop("BACKLOT_HOME", None)  # a backend that happens to be Python must not read Backlot's settings
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists() and log_path.stat().st_size:
        os.replace(log_path, log_path.with_suffix(log_path.suffix + ".1"))  # the previous run's output, kept once
    with open(log_path, "ab", buffering=0) as out:
        try:
            return subprocess.Popen(entry.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(cwd) if cwd else None, env=env, close_fds=True,
                                    start_new_session=True,
                                    preexec_fn=_die_with_parent if entry.demo and sys.platform.startswith("linux")
                                    else None)
        except FileNotFoundError as err:
            raise LaunchError(f"cannot run {program}: no such program") from err
        except PermissionError as err:
            raise LaunchError(f"cannot run {program}: permission denied") from err
        except OSError as err:
            raise LaunchError(f"cannot run {program}: {err.strerror or err}") from err


def record_for(name: str, entry: LaunchEntry, pid: int, log_path: Path) -> Record:
    """The record of a process just started (its start time read from the system)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = time.time()
    return Record(name, pid, created, list(entry.command), entry.host, entry.port, str(log_path))


def matches(record: Record) -> psutil.Process | None:
    """The process the record describes, if it still runs (same pid and start time); else None."""
    import psutil

    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def alive(pid: int, create_time: float | None = None) -> bool:
    """True while ``pid`` runs (and, given ``create_time``, is the same process), not a zombie."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.5:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def tree(pid: int) -> list[psutil.Process]:
    """The process and every descendant (children that left its session included)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_tree(pid: int, grace: float, owned: subprocess.Popen[bytes] | None = None) -> int | None:
    """SIGTERM the process's session and every descendant, SIGKILL what is left after ``grace`` seconds.

    Returns the exit code when ``owned`` is our child (reaped here), else None. Blocks: run it in a thread.
    """
    import psutil

    procs = tree(pid)
    _signal_all(pid, procs, signal.SIGTERM)
    _gone, left = psutil.wait_procs(procs, timeout=grace)
    if left:
        log.warning("pid %s: %d process(es) ignored SIGTERM for %.0f s; killing them", pid, len(left), grace)
        _signal_all(pid, [*left, *(c for p in left for c in _children(p))], signal.SIGKILL)
        psutil.wait_procs(left, timeout=5)
    if owned is not None:
        try:
            return owned.wait(5)
        except subprocess.TimeoutExpired:
            return None
    return None


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group whose leader has died (children of a crashed backend)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children(proc: psutil.Process) -> list[psutil.Process]:
    import psutil

    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []


def _signal_all(pid: int, procs: list[psutil.Process], sig: signal.Signals) -> None:
    import psutil

    try:
        if os.getpgid(pid) == pid:  # it leads its own group (we started it so): one signal reaches the group
            os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on ``host:port``."""
    target = "127.0.0.1" if host in ("0.0.0.0", "localhost", "") else host
    try:
        with socket.create_connection((target, port), timeout=0.3):
            return True
    except OSError:
        return False


def port_holder(port: int) -> psutil.Process | None:
    """The process listening on ``port`` on this machine, when the system lets us see it."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                return psutil.Process(conn.pid)
            except psutil.Error:
                return None
    return None


def describe(proc: psutil.Process) -> str:
    """``pid 1234 (python main.py --port 8188)`` for a message."""
    import psutil

    try:
        cmd = " ".join(Path(proc.cmdline()[0]).name.split() + proc.cmdline()[1:4]) if proc.cmdline() else proc.name()
    except psutil.Error:
        cmd = "?"
    return f"pid {proc.pid} ({cmd})"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host not in ("localhost", "") else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_of(folder: Path) -> Path | None:
    """The Python a checkout runs with: its venv, an embedded one (ComfyUI portable), or one beside it."""
    exe = "python.exe" if sys.platform == "win32" else "python"
    bindir = "Scripts" if sys.platform == "win32" else "bin"
    for base in (folder, folder.parent):
        for venv in ("venv", ".venv", "env"):
            cand = base / venv / bindir / exe
            if cand.is_file():
                return cand
        for embedded in ("python_embeded", "python_embedded"):
            cand = base / embedded / exe
            if cand.is_file():
                return cand
    return None
