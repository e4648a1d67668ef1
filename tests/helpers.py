"""Test helpers: wait on bus events, run small misbehaving servers, black holes."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

from services.events import Event, EventBus

E = TypeVar("E", bound=Event)


class EventWaiter:
    """Collects events of some types from a bus and lets a test await one matching a predicate."""

    def __init__(self, bus: EventBus, *types: type[Event]) -> None:
        self.events: list[Event] = []
        self._cond = asyncio.Condition()
        self._unsub = bus.subscribe(self._on_event, *types)

    def _on_event(self, event: Event) -> None:
        self.events.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait(self, predicate: Callable[[Any], bool], timeout: float = 30.0, start: int = 0) -> Any:
        """The first event from index ``start`` on that matches; waits for it up to ``timeout``."""
        async with asyncio.timeout(timeout):
            async with self._cond:
                while True:
                    for e in self.events[start:]:
                        if predicate(e):
                            return e
                    await self._cond.wait()

    def close(self) -> None:
        """Unsubscribe."""
        self._unsub()


@asynccontextmanager
async def serve(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1 with the given GET routes; yields its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class BlackHoles:
    """Listening sockets that never accept or answer, and ports that are closed."""

    def __init__(self, count: int) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            self.sockets.append(s)
        self.closed_ports = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.closed_ports.append(s.getsockname()[1])
            s.close()

    @property
    def ports(self) -> list[int]:
        """The black-holed ports."""
        return [s.getsockname()[1] for s in self.sockets]

    def close(self) -> None:
        """Close the sockets."""
        for s in self.sockets:
            s.close()
