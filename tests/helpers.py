"""Test helpers: wait on bus events, run small misbehaving servers, black holes."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

from backlot.services.events import Event, EventBus

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
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # don't wait on handlers that hang on purpose
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
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self.closed_ports = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.closed_ports.append(s.getsockname()[1])
            s.close()

    def close(self) -> None:
        """Close the sockets."""
        for s in self.sockets:
            s.close()


class TcpProxy:
    """A loopback TCP proxy to a server, able to cut the connections that carry WebSockets."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.base_events.Server | None = None
        self.ws_links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Listen on a free port; returns the proxy's base URL."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = (writer, up_writer)
        for src, dst, watch in ((reader, up_writer, link), (up_reader, writer, None)):
            task = asyncio.create_task(self._pump(src, dst, watch))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    watch: tuple[asyncio.StreamWriter, asyncio.StreamWriter] | None) -> None:
        try:
            while data := await src.read(65536):
                if watch is not None and b"GET /ws?" in data and watch not in self.ws_links:
                    self.ws_links.append(watch)  # a keep-alive connection may be upgraded later, not first
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def cut_websockets(self) -> int:
        """Drop every WebSocket connection seen so far; returns how many."""
        for a, b in self.ws_links:
            a.transport.abort()
            b.transport.abort()
        n, self.ws_links = len(self.ws_links), []
        return n

    async def close(self) -> None:
        """Stop listening and end every pump."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
