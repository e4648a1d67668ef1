"""What the fronts see of a launch entry: its view and how its process last ended (standard library only)."""
from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ExitInfo:
    """How a process ended: its code (negative: the signal), when, and whether Backlot asked it to."""

    code: int | None
    at: float
    expected: bool

    @property
    def words(self) -> str:
        """``code 1`` or ``code -9: SIGKILL``."""
        if self.code is None:
            return "code unknown"
        if self.code < 0:
            try:
                return f"code {self.code}: {signal.Signals(-self.code).name}"
            except ValueError:
                return f"code {self.code}"
        return f"code {self.code}"

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "at", "expected", "words"}``."""
        return {"code": self.code, "at": self.at, "expected": self.expected, "words": self.words}


@dataclass(frozen=True)
class LaunchView:
    """One entry as the fronts see it: ``launch.list``'s row and the ``launch.updated`` payload."""

    name: str
    kind: str
    state: str
    message: str
    pid: int | None
    host: str
    port: int
    url: str
    service_id: str
    restarts: int
    last_exit: ExitInfo | None
    start: str
    restart: str
    keep_running: bool
    adopted: bool
    demo: bool
    holder: str
    command: str
    tail: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"name": self.name, "kind": self.kind, "state": self.state, "message": self.message, "pid": self.pid,
                "host": self.host, "port": self.port, "url": self.url, "service_id": self.service_id,
                "restarts": self.restarts, "last_exit": None if self.last_exit is None else self.last_exit.to_dict(),
                "start": self.start, "restart": self.restart, "keep_running": self.keep_running,
                "adopted": self.adopted, "demo": self.demo, "holder": self.holder, "command": self.command,
                "tail": list(self.tail)}
