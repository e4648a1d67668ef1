"""The running instance as the CLI sees it: where it listens, how to reach it, and starting one in the background.

The instance (``backlot --headless``, ``backlot demo`` or the window) writes ``<config>/instance.json``
(and ``<data>/instance.json``) with its pid, API address and data folder once it serves; clients read
it, check the pid still holds the instance lock, and talk to it with the same stdlib client the Blender
addon uses. Finding a running instance imports nothing but the standard library: the settings (and the
core with them) are loaded only to start one, or to read the job store when none runs.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import backlot
from backlot.blender_addon.client import ApiClient, ClientError, config_dir
from backlot.services.lockfile import lock_holder

if TYPE_CHECKING:
    import subprocess

    from backlot.services.config import Settings

# `subprocess` (to start an instance) and `logging` (set up when the core loads, or at --log-level DEBUG or INFO) load
# where they are used: with `dataclasses`, they took the thin client longer to import than its talk with the instance.
PACKAGE_ROOT = Path(backlot.__file__).resolve().parent.parent  # the checkout, or site-packages
START_TIMEOUT = 90.0  # seconds a background instance may take to serve (first start imports a lot)
# Instances started from this process: kept so the Popen objects are not collected while the
# (deliberately detached) instance runs on.
_started: list[subprocess.Popen[bytes]] = []


class NotRunning(Exception):
    """No Backlot instance serves this home (exit code 4)."""


def _debug(message: str, *args: Any) -> None:
    """A debug line, where logging is set up (``--log-level DEBUG``): without that it would go nowhere anyway."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).debug(message, *args)


class Home:
    """The home a command works on (``--home``, else BACKLOT_HOME, else the platform's folders).

    A plain class, like ``Instance``: importing ``dataclasses`` takes about as long as the thin client's whole exchange
    with the instance.
    """

    def __init__(self, home: str | None = None, overrides: dict[str, Any] | None = None,
                 log_level: str = "WARNING") -> None:
        self.home = home
        self.overrides = dict(overrides or {})  # settings from command-line flags
        self.log_level = log_level  # what the core logs to stderr, once settings() has loaded it

    @property
    def config_dir(self) -> Path:
        """Where the token and the running instance's address are."""
        return config_dir(self.home)

    @property
    def token_file(self) -> Path:
        """The socket API token."""
        return self.config_dir / "api-token"

    def settings(self) -> Settings:
        """The full settings (loads the core: only to start an instance or read the store without one).

        From here on the core may log: its lines go to stderr at ``log_level``.
        """
        from backlot.cli.main import log_to_stderr
        from backlot.services.config import load_settings

        log_to_stderr(self.log_level)
        return load_settings(home=self.home, cli=self.overrides)


class Instance:
    """Where the running instance of a home listens."""

    def __init__(self, pid: int, api_host: str, api_port: int, token_file: Path, lock_file: Path | None = None) -> None:
        self.pid, self.api_host, self.api_port, self.token_file = pid, api_host, api_port, token_file
        self.lock_file = lock_file  # held until the process has stopped (and what it launched with it)

    def alive(self) -> bool:
        """True until the process has let go of its instance lock (it has stopped, not only stopped serving)."""
        return self.lock_file is not None and lock_holder(self.lock_file) == self.pid

    def client(self, name: str = "backlot-cli", topics: list[str] | None = None) -> ApiClient:
        """A connected client (hello done); raises ClientError when it cannot connect."""
        return ApiClient(self.api_host, self.api_port, token_file=self.token_file, client_name=name, topics=topics,
                         reconnect=False, call_timeout=60.0).connect(timeout=10.0)


def find(home: Home) -> Instance | None:
    """The running instance of this home, or None (a stale file of a dead instance does not count)."""
    try:
        info = json.loads((home.config_dir / "instance.json").read_text(encoding="utf-8"))
        lock = Path(str(info["data_dir"])) / "backlot.lock"
        pid = lock_holder(lock)
        if pid is None or info.get("pid") != pid:
            return None  # gone, or holding the lock but not serving yet (still starting)
        _debug("Backlot pid %d serves %s:%s for %s", pid, info["api_host"], info["api_port"], home.config_dir)
        return Instance(pid, str(info["api_host"]), int(info["api_port"]), home.token_file, lock)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def require(home: Home) -> Instance:
    """The running instance, or NotRunning with the sentence to print."""
    found = find(home)
    if found is None:
        raise NotRunning("Backlot is not running for this home; start it with `backlot --headless` (or `backlot`)")
    return found


@contextmanager
def _starting_lock(data_path: Path) -> Iterator[None]:
    """One starter at a time: ten concurrent submits start one instance, not ten."""
    from backlot.services.instance import FolderError

    path = data_path / "starting.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise FolderError(f"cannot use the data folder {path.parent}: {err.strerror or err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def ensure(home: Home, say: Any) -> Instance:
    """The running instance, starting ``backlot --headless`` in the background when none runs (``say`` tells)."""
    found = find(home)
    if found is not None:
        return found
    import subprocess

    settings = home.settings()
    with _starting_lock(settings.data_path):
        found = find(home)
        if found is not None:
            return found
        log_path = settings.data_path / "backlot.log"
        args = [sys.executable, "-m", "backlot", "--headless"]
        env = dict(os.environ)
        # this very Backlot, from wherever the user stands: the folder holding the package comes first
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]))
        if settings.paths.home is not None:
            env["BACKLOT_HOME"] = str(settings.paths.home)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    start_new_session=True, cwd=os.getcwd())
        _started.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = find(home)
            if found is not None and found.pid == proc.pid:
                say(f"started Backlot in the background (pid {proc.pid}, log {log_path}); `backlot stop` stops it")
                return found
            if proc.poll() is not None:
                raise NotRunning(f"Backlot could not start in the background (exit {proc.returncode}); "
                                 f"see {log_path}")
            time.sleep(0.1)  # polling a file another process writes: nothing to wait on instead
        proc.terminate()
        raise NotRunning(f"Backlot did not start within {START_TIMEOUT:.0f} s; see {log_path}")


__all__ = ["ClientError", "Home", "Instance", "NotRunning", "ensure", "find", "require"]
