"""TaskKeeper: every coroutine the window starts is named, kept, logged when it fails, and cancelled at shutdown."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskKeeper:
    """Holds the window's background tasks (the core keeps its own in ControlCenter)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Start ``coro`` as a named task on the running loop and keep it until it ends.

        Widgets fed data without a running loop (their tests) make no background work: the
        coroutine is closed unstarted and None returned.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            log.debug("%s: no event loop running; not started", name)
            return None
        task = loop.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception(), exc_info=task.exception())

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel every kept task and wait for them to end."""
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.error("task %s did not stop within %.1f s", t.get_name(), timeout)
