"""One running Backlot per home: an advisory lock file in the data folder."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from backlot.services.errors import BacklotError
from backlot.services.lockfile import lock_holder


class FolderError(BacklotError):
    """Backlot's home or data folder cannot be created or written (read-only, a file in the way, full)."""


class InstanceLocked(BacklotError):
    """Another Backlot already runs for this home."""


class InstanceLock:
    """``flock`` on ``<data>/backlot.lock``; the holder's pid is written inside for messages."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "backlot.lock"
        self._fd: int | None = None

    def holder(self) -> int | None:
        """The pid of the running instance, or None when nobody holds the lock."""
        return lock_holder(self.path)

    def acquire(self) -> None:
        """Take the lock or raise InstanceLocked naming the holder."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise FolderError(f"cannot use the data folder {self.path.parent}: {err.strerror or err}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceLocked(f"another Backlot already runs for this home (pid {self.holder()}); "
                                 "stop it or use another --home") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock back."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def instance_file(data_dir: Path) -> Path:
    """``<data>/instance.json``: the running instance's pid and API address, for its clients (CLI, Blender)."""
    return data_dir / "instance.json"


def record_instance(data_dir: Path, host: str, port: int, config_dir: Path | None = None) -> None:
    """Written by the instance once its API listens (atomically: readers never see half a file).

    A copy goes in the config folder too, with the data folder named: the command line's thin client
    finds the instance there without loading the settings (which may move the data folder).
    """
    record = {"pid": os.getpid(), "api_host": host, "api_port": port, "data_dir": str(data_dir)}
    for path in [instance_file(data_dir)] + ([instance_file(config_dir)] if config_dir is not None else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(path)


def forget_instance(data_dir: Path, config_dir: Path | None = None) -> None:
    """Removed by the instance when it stops (only its own: a newer instance's file stays)."""
    for path in [instance_file(data_dir)] + ([instance_file(config_dir)] if config_dir is not None else []):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") != os.getpid():
                continue
        except (OSError, ValueError, AttributeError):
            pass  # unreadable or gone: remove what is there
        path.unlink(missing_ok=True)
