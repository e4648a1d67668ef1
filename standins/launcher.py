"""Start and stop stand-in processes; used by ``python -m backlot.standins all``, the demo and the tests."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import backlot
from backlot.standins._common import READY_PREFIX

log = logging.getLogger(__name__)

KINDS = ("comfyui", "wan2gp", "wan2gp-webui", "rvc", "audioldm", "llm")
# Modules run with ``python -m``; the Gradio 3 ones need their own interpreter (see gradio3_python).
MODULES = {
    "comfyui": "backlot.standins.comfyui",
    "wan2gp": "backlot.standins.wan2gp",
    "wan2gp-webui": "backlot.standins.wan2gp_webui",
    "rvc": "backlot.standins.gradio3.rvc",
    "audioldm": "backlot.standins.gradio3.audioldm",
    "llm": "backlot.standins.llm",
}
GRADIO3_KINDS = ("rvc", "audioldm")
GRADIO_KINDS = ("wan2gp-webui",)  # need the ``gradio`` package (a test extra, not a dependency)
# The checkout (or, in an installed wheel, the package's own folder): where ``.venv-gradio3`` lives.
REPO_ROOT = Path(__file__).resolve().parent.parent
# The folder that holds the ``backlot`` package: a child finds ``backlot.standins`` from there.
IMPORT_ROOT = Path(backlot.__file__).resolve().parent.parent


class StandinError(RuntimeError):
    """A stand-in could not be started."""


def gradio3_python() -> Path:
    """The interpreter of the separate Gradio 3.50 environment (RVC and AudioLDM stand-ins)."""
    configured = os.environ.get("BACKLOT_GRADIO3_PYTHON")
    path = Path(configured) if configured else REPO_ROOT / ".venv-gradio3" / "bin" / "python"
    if not path.exists():
        raise StandinError(
            f"the Gradio 3 environment for the RVC and AudioLDM stand-ins is missing ({path}); "
            "run `make setup` or set BACKLOT_GRADIO3_PYTHON")
    return path


def unavailable(kind: str) -> str | None:
    """Why this machine cannot run a stand-in of ``kind`` (a missing interpreter or package), or None."""
    if kind in GRADIO3_KINDS:
        try:
            gradio3_python()
        except StandinError:
            return ("needs a Gradio 3.50 interpreter: set BACKLOT_GRADIO3_PYTHON to one "
                    "(a clone's `make setup` makes .venv-gradio3)")
    elif kind in GRADIO_KINDS and importlib.util.find_spec("gradio") is None:
        return "needs the gradio package in Backlot's environment"
    return None


def command_for(kind: str, port: int, host: str = "127.0.0.1", speed: float = 1.0,
                data: Path | None = None, extra: list[str] | None = None) -> list[str]:
    """The command line that runs one stand-in."""
    if kind not in MODULES:
        raise StandinError(f"unknown stand-in kind {kind!r}; choose one of {', '.join(KINDS)}")
    python = str(gradio3_python()) if kind in GRADIO3_KINDS else sys.executable
    cmd = [python, "-m", MODULES[kind], "--host", host, "--port", str(port), "--speed", str(speed)]
    if data is not None:
        cmd += ["--data", str(data)]
    return cmd + list(extra or [])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child if the launcher dies, so a killed demo leaves no orphans."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class StandinProcess:
    """One running stand-in: its process, URL and the tail of what it printed."""

    kind: str
    proc: subprocess.Popen[str]
    url: str = ""
    info: dict[str, object] = field(default_factory=dict)
    output: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    _ready: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None
    _term_sent: bool = False

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    @property
    def port(self) -> int:
        """The port it listens on."""
        port = self.info.get("port", 0)
        return int(port) if isinstance(port, (int, str)) else 0

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(READY_PREFIX) and not self._ready.is_set():
                self.info = json.loads(line[len(READY_PREFIX):])
                self.url = str(self.info["url"])
                self._ready.set()
            else:
                self.output.append(line)
        self._ready.set()  # EOF: wake a waiter so it sees the process ended

    def wait_ready(self, timeout: float) -> None:
        """Block until the stand-in listens; raise StandinError with its output if it dies or stalls."""
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            tail = "\n".join(list(self.output)[-15:])
            why = f"exited with code {self.proc.returncode}" if self.proc.poll() is not None else f"was not ready after {timeout:.0f} s"
            raise StandinError(f"stand-in {self.kind} {why}:\n{tail}")

    def terminate(self) -> None:
        """Send SIGTERM once, without waiting (a second one could cut the process's own clean exit short)."""
        if self.alive() and not self._term_sent:
            self._term_sent = True
            self.proc.terminate()

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("stand-in %s (pid %s) ignored SIGTERM; killing it", self.kind, self.pid)
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)


def spawn(kind: str, port: int = 0, host: str = "127.0.0.1", speed: float = 1.0,
          data: Path | None = None, extra: list[str] | None = None,
          env: dict[str, str] | None = None) -> StandinProcess:
    """Start one stand-in process without waiting for it to be ready."""
    cmd = command_for(kind, port, host, speed, data, extra)
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(IMPORT_ROOT), child_env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=child_env, cwd=str(IMPORT_ROOT),
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    sp = StandinProcess(kind=kind, proc=proc)
    sp._reader = threading.Thread(target=sp._read, name=f"standin-{kind}-stdout", daemon=True)
    sp._reader.start()
    return sp


def start(kind: str, port: int = 0, timeout: float = 60.0, **kwargs: object) -> StandinProcess:
    """Start one stand-in and wait until it listens."""
    sp = spawn(kind, port, **kwargs)  # type: ignore[arg-type]
    sp.wait_ready(timeout)
    return sp


def start_many(kinds: list[str] | tuple[str, ...] = KINDS, timeout: float = 90.0,
               speed: float = 1.0, data_root: Path | None = None) -> dict[str, StandinProcess]:
    """Start several stand-ins in parallel on free ports; all ready, or none left running."""
    procs: dict[str, StandinProcess] = {}
    try:
        for kind in kinds:
            data = data_root / kind if data_root is not None else None
            procs[kind] = spawn(kind, 0, speed=speed, data=data)
        deadline = time.monotonic() + timeout
        for sp in procs.values():
            sp.wait_ready(max(1.0, deadline - time.monotonic()))
    except BaseException:
        stop_all(procs)
        raise
    return procs


def stop_all(procs: dict[str, StandinProcess], timeout: float = 10.0) -> None:
    """Stop every process: SIGTERM to all first, then wait for each."""
    for sp in procs.values():
        sp.terminate()
    for sp in procs.values():
        sp.stop(timeout)
