"""TaskKeeper: the one way Backlot runs background work. Every coroutine it starts is named, kept
until it ends, logged when it fails, and cancelled and awaited when its owner stops.

The control center, the inventory cache, the job runner, the socket API and the window each hold one.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

log = logging.getLogger(__name__)


class TaskKeeper:
    """Named background tasks of one owner."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], str] = {}

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any], *, unique: bool = False) -> asyncio.Task[Any] | None:
        """Start ``coro`` as a named task on the running loop and keep it until it ends.

        ``unique``: when a task of that name still runs, ``coro`` is closed unstarted and that task returned.
        Without a running loop (widgets fed data in their tests) nothing starts: the coroutine is closed and
        None returned.
        """
        if unique and (running := self.get(name)) is not None:
            coro.close()
            return running
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            log.debug("%s: no event loop running; not started", name)
            return None
        return self.adopt(loop.create_task(coro, name=name))

    def adopt(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Keep a task started elsewhere (a connection's handler) as if it had been spawned here."""
        self._tasks[task] = task.get_name()
        task.add_done_callback(self._done)
        return task

    def get(self, name: str) -> asyncio.Task[Any] | None:
        """The running task of that name, if any."""
        return next((t for t, n in self._tasks.items() if n == name and not t.done()), None)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception(), exc_info=task.exception())

    async def wait(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: for ever) for the tasks running now; they go on after it."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def cancel(self, name: str) -> None:
        """Cancel the task of that name, if it runs, and wait for it to end."""
        task = self.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel every kept task and wait for them to end (a task still running after ``timeout`` is logged)."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.error("task %s did not stop within %.1f s", t.get_name(), timeout)
