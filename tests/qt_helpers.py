"""Helpers for tests that drive the assembled window on a qasync loop, as ``backlot`` runs it."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import qasync


def run_in_qasync(qapp: Any, coro: Coroutine[Any, Any, Any], timeout: float = 120.0) -> Any:
    """Run ``coro`` on a qasync loop over the test's QApplication."""
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def until(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    """Wait for a condition the loop's events make true (polled: Qt slots set it, not an awaitable)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
