"""One launch entry's runtime state, kept across its restarts: its process, its console (tailed from the file the
process writes) and its view; and spawning a process so that a cancelled start leaves nothing behind."""
from __future__ import annotations

import asyncio
import os
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backlot.services.launch import process
from backlot.services.launch.console import Console, ConsoleLine
from backlot.services.launch.entry import LaunchEntry
from backlot.services.launch.view import ExitInfo, LaunchView

TAIL_SHOWN = 6  # console lines a view carries (the card shows them while starting or after a failure)


@dataclass(eq=False)
class EntryRun:
    """An entry's runtime state (one per entry, kept across its restarts)."""

    name: str
    entry: LaunchEntry
    console: Console
    log_path: Path
    state: str = "stopped"
    message: str = ""
    pid: int | None = None
    create_time: float | None = None
    popen: subprocess.Popen[bytes] | None = None
    adopted: bool = False
    restarts: int = 0
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    last_exit: ExitInfo | None = None
    exit_sentence: tuple[float, str] | None = None  # (when, what jobs on it were told)
    holder: str = ""
    wanted: bool = False
    stopping: bool = False
    task: asyncio.Task[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None
    log_pos: int = 0
    pending: Any = None  # the entry as now configured, applied at its next start

    def alive(self) -> bool:
        return self.pid is not None and not self.exited.is_set()

    def after_exit(self) -> str:
        """`` after it exited (code N)`` once it has exited, else nothing."""
        return f" after it exited ({self.last_exit.words})" if self.last_exit is not None else ""

    def last_lines(self) -> str:
        """``; last lines:`` and its own last console lines (not Backlot's notes), for a message."""
        tail = [t for t in self.console.tail(TAIL_SHOWN + 4) if not t.startswith("[backlot]")][-TAIL_SHOWN:]
        return ("; last lines:\n" + "\n".join(tail)) if tail else ""

    def read_console(self) -> tuple[ConsoleLine, ...]:
        """What the process wrote to its console file since the last read, as console lines (the file is cut back
        past ``LOG_KEEP_BYTES``: the process appends, so that is safe)."""
        try:
            size = os.stat(self.log_path).st_size
        except OSError:
            return ()
        if size < self.log_pos:  # cut back: read from the start
            self.log_pos = 0
        if size == self.log_pos:
            return ()
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_pos)
                data = f.read(min(size - self.log_pos, 1 << 20))
        except OSError:
            return ()
        self.log_pos += len(data)
        lines = tuple(self.console.add(data.decode("utf-8", "replace")))
        if self.log_pos > process.LOG_KEEP_BYTES:
            try:
                os.truncate(self.log_path, 0)
                self.log_pos = 0
            except OSError:
                pass
        return lines

    def view(self) -> LaunchView:
        """What the fronts see of it now."""
        e = self.entry
        return LaunchView(self.name, e.kind, self.state, self.message, self.pid if self.alive() else None, e.host,
                          e.port, e.url, e.service_id, self.restarts, self.last_exit, e.start.value, e.restart.value,
                          e.keep_running, self.adopted, e.demo, self.holder, self.console.redact(e.shown_command()),
                          tuple(self.console.tail(TAIL_SHOWN)))


async def spawn_or_undo(entry: LaunchEntry, log_path: Path) -> subprocess.Popen[bytes]:
    """``process.spawn`` on a worker thread; if the caller is cancelled meanwhile (a stop, Backlot closing), the
    process the thread still starts is stopped again rather than left running unrecorded."""
    spawning = asyncio.ensure_future(asyncio.to_thread(process.spawn, entry, log_path))
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        try:
            popen = await spawning
        except Exception:
            raise asyncio.CancelledError from None
        await asyncio.to_thread(process.stop_tree, popen.pid, entry.stop_grace, popen)
        raise
