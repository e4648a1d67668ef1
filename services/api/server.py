"""ApiServer: the socket API's listener and connections (auth, limits, concurrency, slow readers).

Each connection reads lines in order; until ``session.hello`` succeeds requests are handled one by
one (so nothing runs unauthenticated), afterwards each request is its own task, so a slow
``jobs.submit`` never holds up ``session.ping``. Answers and notifications go straight to the
transport; its write buffer is the client's bounded queue: a client that lets it grow past
``Limits.send_buffer`` is not reading and is dropped.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from backlot.services.api.dispatch import Hello, Methods, Session
from backlot.services.api.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    ApiError,
    Busy,
    InvalidParams,
    LineTooLong,
    Request,
    TooLarge,
    Unauthorized,
    encode_error,
    parse_request,
    read_line,
)
from backlot.services.errors import BacklotError
from backlot.services.keeper import TaskKeeper

log = logging.getLogger(__name__)


class ApiStartError(BacklotError):
    """The API cannot listen where it was told to (the message says what to change)."""


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the server."""

    max_line: int = MAX_LINE          # bytes in one request line
    max_outstanding: int = 64         # requests in flight per connection (more: -32005)
    max_connections: int = 128        # open connections (more: -32005 and closed)
    send_buffer: int = 4 << 20        # bytes waiting for a client to read before it is dropped
    auth_failures: int = 3            # failed requests before hello succeeds, then the connection closes
    hello_timeout: float = 30.0       # seconds a connection may stay unauthenticated


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiServer:
    """JSON-RPC 2.0 over NDJSON on TCP; ``start()`` binds, ``stop()`` closes every connection and awaits its task."""

    def __init__(self, host: str, port: int, token: str, handlers: Methods, limits: Limits | None = None, *,
                 allow_remote: bool = False) -> None:
        self.host = host
        self.port = port
        self._token = token.encode()
        self.methods = handlers
        self.limits = limits or Limits()
        self.allow_remote = allow_remote
        self.dropped = 0  # clients closed because they stopped reading
        self._server: asyncio.Server | None = None
        self._connections: dict[int, Connection] = {}
        self._handlers = TaskKeeper()  # one task per connection (asyncio's stream callbacks)
        self._ids = itertools.count(1)
        self._stopping = False

    @property
    def connections(self) -> int:
        """Open connections."""
        return len(self._connections)

    def subscribers(self, topic: str) -> tuple[str, ...]:
        """The client names (from hello) of the open sessions subscribed to ``topic``, in connection order."""
        return tuple(c.session.client for _, c in sorted(self._connections.items())
                     if c.session.authenticated and not c.closing and topic in c.session.topics)

    async def start(self) -> None:
        """Listen; ApiStartError when the address is refused or not loopback without ``allow_remote``."""
        if not is_loopback(self.host):
            if not self.allow_remote:
                raise ApiStartError(f"refusing to serve the API on {self.host}: set api_host explicitly to listen "
                                    "beyond this machine")
            log.warning("the socket API listens on %s, reachable from other machines; anyone with the token can "
                        "run jobs", self.host)
        try:
            self._server = await asyncio.start_server(self._on_connect, self.host, self.port,
                                                      limit=self.limits.max_line)
        except OSError as err:
            raise ApiStartError(f"cannot serve the API on {self.host}:{self.port}: {err.strerror or err}; "
                                "set api_port (or --api-port) to a free port") from err
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("socket API on %s:%d", self.host, self.port)

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop listening, close every connection, cancel and await their tasks."""
        if self._server is not None:
            self._server.close()
        self._stopping = True
        for conn in list(self._connections.values()):
            conn.close()  # each read loop sees the end of its stream and cleans up (answers already sent still go out)
        await self._handlers.wait(timeout / 2)  # a grace time to send what is already answered
        await self._handlers.cancel_all(timeout / 2)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sid = next(self._ids)
        task.set_name(f"api-connection-{sid}")
        if len(self._connections) >= self.limits.max_connections:
            writer.write(encode_error(None, Busy("busy: too many connections to Backlot; try again later")))
            writer.close()
            return
        self._handlers.adopt(task)
        conn = Connection(self, reader, writer, sid)
        self._connections[sid] = conn
        try:
            await conn.run()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # stop() cancelled it after the grace time; asyncio's stream callback must not see a cancelled task
        finally:
            del self._connections[sid]

    def check_token(self, token: str) -> bool:
        """Constant-time comparison with the server's token."""
        return hmac.compare_digest(token.encode(), self._token)


class Connection:
    """One client: its read loop, its requests in flight, and its session."""

    def __init__(self, server: ApiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sid: int) -> None:
        self.server = server
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.session = Session(sid, f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer), self.push)
        self.pending = TaskKeeper()  # requests that wait (a job's result, say), each its own task
        self.closing = False

    def push(self, line: bytes) -> bool:
        """Send a line now; a client whose unread data passed the limit is dropped instead (returns False)."""
        transport = self.writer.transport
        if self.closing or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.limits.send_buffer:
            log.warning("API session %d (%s) stopped reading; dropped it", self.session.id, self.session.client
                        or self.session.peer)
            self.server.dropped += 1
            self.closing = True
            transport.abort()
            return False
        transport.write(line)
        return True

    def close(self) -> None:
        """Close after what is already written has been sent."""
        self.closing = True
        self.writer.close()

    async def run(self) -> None:
        """Read and answer lines until the client leaves, misbehaves or the server stops."""
        try:
            while not self.closing:
                try:
                    if self.session.authenticated:
                        line = await read_line(self.reader)
                    else:
                        async with asyncio.timeout(self.limits.hello_timeout):
                            line = await read_line(self.reader)
                except LineTooLong:
                    self._refuse(TooLarge(f"message too large: the limit is {self.limits.max_line} bytes a line"))
                    continue
                except (ConnectionError, TimeoutError):
                    break
                if line is None:
                    break
                if line.strip():
                    await self._handle(line)
        finally:
            await self._finish()

    async def _handle(self, line: bytes) -> None:
        try:
            request = parse_request(line)
        except ApiError as err:
            self._refuse(err)
            return
        if not self.session.authenticated:
            await self._hello(request)
            return
        if len(self.pending) >= self.limits.max_outstanding:
            if request.has_id:
                self.push(encode_error(request.id, Busy(f"busy: {self.limits.max_outstanding} requests already in "
                                                        "flight on this connection")))
            return
        started = self.server.methods.begin(self.session, request)
        if isinstance(started, bytes):
            self.push(started)
        elif started is not None:  # it has to wait: its own task, so later requests are not held up
            self.pending.spawn(f"api-{self.session.id}-{request.method}", self._send_when_done(started))

    async def _send_when_done(self, started: Awaitable[bytes | None]) -> None:
        line = await started
        if line is not None:
            self.push(line)

    async def _hello(self, request: Request) -> None:
        """Only ``session.hello`` with the right token opens a session; other requests count as failures."""
        try:
            if request.method != "session.hello":
                raise Unauthorized("unauthorized: send session.hello with the token first", request_id=request.id)
            _, params = self.server.methods.validate(request)
            assert isinstance(params, Hello)
            if not self.server.check_token(params.token):
                raise Unauthorized("unauthorized: wrong token", request_id=request.id)
            if params.protocol != PROTOCOL_VERSION:
                raise InvalidParams(f"protocol {params.protocol} is not supported; this Backlot speaks protocol "
                                    f"{PROTOCOL_VERSION}", request_id=request.id)
        except ApiError as err:
            err.request_id = request.id
            self._refuse(err, reply=request.has_id)
            return
        self.session.authenticated, self.session.client = True, params.client
        log.info("API client %s connected (session %d, %s)", params.client or "unnamed", self.session.id,
                 self.session.peer)
        line = await self.server.methods.dispatch(self.session, request)
        if line is not None:
            self.push(line)

    def _refuse(self, err: ApiError, reply: bool = True) -> None:
        """Answer an error (not to a notification); before hello, the third one closes the connection."""
        if reply:
            self.push(encode_error(err.request_id, err))
        if not self.session.authenticated:
            self.session.failures += 1
            if self.session.failures >= self.limits.auth_failures:
                log.warning("API session %d (%s): %d failed requests before hello; closed", self.session.id,
                            self.session.peer, self.session.failures)
                self.close()

    async def _finish(self) -> None:
        self.closing = True
        self.server.methods.closed(self.session)  # first: a stop may cancel the awaits below
        self.writer.close()
        await self.pending.cancel_all()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (TimeoutError, ConnectionError):
            self.writer.transport.abort()
        if self.session.authenticated:
            log.info("API client %s left (session %d)", self.session.client or "unnamed", self.session.id)
