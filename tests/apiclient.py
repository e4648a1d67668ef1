"""A small raw-socket JSON-RPC client for the API tests, and fixtures' building blocks."""
from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from backlot.services.api.dispatch import Methods
from backlot.services.api.handlers import Handlers
from backlot.services.api.server import ApiServer, Limits
from backlot.services.api.token import read_token
from backlot.services.config import load_settings
from backlot.services.control import ControlCenter

ERROR_CODES = {-32700, -32600, -32601, -32602, -32603, -32001, -32002, -32003, -32004, -32005}


class RawClient:
    """Writes whatever it is given; ``call`` matches answers by id and keeps everything else in ``inbox``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.inbox: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 << 20)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, method: str, params: Any = None, rid: Any = "auto") -> Any:
        """Send a request; returns its id."""
        rid = next(self._ids) if rid == "auto" else rid
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            msg["params"] = params
        await self.send_raw(json.dumps(msg).encode() + b"\n")
        return rid

    async def recv(self, timeout: float = 15.0) -> dict[str, Any] | None:
        """The next line as JSON; None at end of stream."""
        async with asyncio.timeout(timeout):
            try:
                line = await self.reader.readline()
            except ConnectionError:
                return None
        if not line:
            return None
        msg = json.loads(line)
        assert isinstance(msg, dict)
        return msg

    async def response(self, rid: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The response to ``rid`` (notifications and other answers go to ``inbox``)."""
        for i, m in enumerate(self.inbox):
            if "method" not in m and m.get("id") == rid:
                return self.inbox.pop(i)
        while True:
            msg = await self.recv(timeout)
            assert msg is not None, f"connection closed while waiting for {rid!r}"
            if "method" not in msg and msg.get("id") == rid:
                return msg
            self.inbox.append(msg)

    async def call(self, method: str, params: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        """Send and wait for the answer (the whole response object)."""
        return await self.response(await self.send(method, params), timeout)

    async def result(self, method: str, params: Any = None, timeout: float = 30.0) -> Any:
        """Send, wait, and return ``result`` (failing on an error answer)."""
        msg = await self.call(method, params, timeout)
        assert "result" in msg, msg
        return msg["result"]

    async def hello(self, token: str, client: str = "test") -> dict[str, Any]:
        return await self.call("session.hello", {"token": token, "client": client, "protocol": 1})

    async def notification(self, method: str, predicate: Callable[[Any], bool] = lambda p: True,
                           timeout: float = 30.0) -> Any:
        """Params of the first notification ``method`` matching ``predicate`` (seen or still to come)."""
        for i, m in enumerate(self.inbox):
            if m.get("method") == method and predicate(m.get("params")):
                return self.inbox.pop(i)["params"]
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                assert msg is not None, f"connection closed while waiting for {method}"
                if msg.get("method") == method and predicate(msg.get("params")):
                    return msg["params"]
                self.inbox.append(msg)

    async def closed(self, timeout: float = 10.0) -> bool:
        """True once the server closed the connection (reads and drops what is left)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if not await self.reader.read(65536):
                        return True
                except ConnectionError:
                    return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def assert_response(msg: dict[str, Any]) -> None:
    """A well-formed JSON-RPC 2.0 response with a known error code if it is an error."""
    assert msg.get("jsonrpc") == "2.0" and "id" in msg, msg
    assert ("result" in msg) != ("error" in msg), msg
    if "error" in msg:
        err = msg["error"]
        assert err["code"] in ERROR_CODES and isinstance(err["message"], str) and err["message"], msg


def center_settings(*urls: str, **extra: Any) -> Any:
    return load_settings(cli={"urls": list(urls), "scan_default_ports": False, "discovery_budget": 1.0,
                              "health_interval": 0.3, "health_timeout": 1.0, "api_port": 0, **extra})


class Api:
    """A running control center with its API server, the token, and a way to open clients."""

    def __init__(self, center: ControlCenter, server: ApiServer) -> None:
        self.center, self.server = center, server
        self.token = read_token(center.settings.paths.token_file)
        self.clients: list[RawClient] = []

    async def client(self, hello: bool = True, name: str = "test") -> RawClient:
        c = await RawClient.connect(self.server.port)
        self.clients.append(c)
        if hello:
            assert "result" in await c.hello(self.token, name)
        return c


@asynccontextmanager
async def running_api(*urls: str, limits: Limits | None = None, **extra: Any) -> AsyncIterator[Api]:
    """ControlCenter(serve_api=True) on port 0; with ``limits``, a second server with those limits on the same center."""
    center = ControlCenter(center_settings(*urls, **extra), serve_api=True, discover_on_start=bool(urls))
    await center.start()
    assert center.api is not None
    server = center.api
    if limits is not None:
        handlers = Handlers(center)
        server = ApiServer("127.0.0.1", 0, read_token(center.settings.paths.token_file),
                           Methods.collect(handlers, handlers.closed), limits)
        await server.start()
    api = Api(center, server)
    try:
        yield api
    finally:
        for c in api.clients:
            await c.close()
        if server is not center.api:
            await server.stop()
        await center.stop()

