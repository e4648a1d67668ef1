"""Wan2GP's MCP server as the adapter sees it: one MCP session per service, kept and reused, tool results as dicts.

Wan2GP runs FastMCP with ``stateless_http=True`` (reference/wan2gp-mcp.md): it hands out no session id, so a
session is only our side's request ids over one httpx client. It is opened once (one ``initialize``), shared by
every call and poll, and dropped after a transport failure so the next call initializes again. The SDK's task
group lives in a task of its own, so calls from any task may use the session and ``close`` ends it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from backlot.services import __version__
from backlot.services.errors import BacklotError, ErrorClass, ServiceError, classify_status

if TYPE_CHECKING:  # the SDK costs ~0.25 s to import: it is loaded on a worker thread at first use (_sdk)
    import httpx
    from mcp import ClientSession

log = logging.getLogger(__name__)
MCP_PATH = "/mcp/"  # FastMCP answers /mcp with a 307 to /mcp/; post to the slash form directly


class ToolError(BacklotError):
    """A tool ran and raised (``isError``); ``message`` is the server's sentence without the SDK's prefix."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.message = message


def _load_sdk() -> None:
    """Import the MCP SDK (and httpx, pydantic) so later imports are lookups in sys.modules."""
    import httpx  # noqa: F401
    import mcp.client.streamable_http  # noqa: F401
    import mcp.types  # noqa: F401
    from mcp import ClientSession  # noqa: F401


async def _sdk() -> None:
    """Load the SDK off the event loop (a no-op once loaded)."""
    import sys

    if "mcp.client.streamable_http" not in sys.modules:
        await asyncio.to_thread(_load_sdk)


class _Held:
    """One open MCP session and the task that holds the SDK's transport open."""

    def __init__(self, task: asyncio.Task[None], session: ClientSession) -> None:
        self.task = task
        self.session = session


class McpLink:
    """Calls Wan2GP's tools over one reused streamable-HTTP session; every call has a deadline and one error family."""

    def __init__(self, base_url: str, *, service: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + MCP_PATH
        self.service = service
        self.timeout = timeout
        self.sessions_opened = 0  # how many times ``initialize`` was sent (one while all goes well)
        self._http: httpx.AsyncClient | None = None
        self._held: _Held | None = None
        self._lock = asyncio.Lock()

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call ``tool`` within ``timeout`` s; its dict result (list tools give ``{"result": [...]}``).

        Raises ToolError when the tool itself failed (the session stays), ServiceError for anything else (the
        session is dropped and the next call opens a new one).
        """
        held: _Held | None = None
        try:
            async with asyncio.timeout(self.timeout):
                held = await self._session()
                return await _race(_call_tool(held.session, tool, arguments), held.task, tool)
        except ToolError:
            raise
        except BaseException as err:
            if held is None and isinstance(err, asyncio.CancelledError):
                raise
            failed = held or self._held
            cause = await self._cause(failed, err)
            await self._drop(failed)
            if isinstance(err, asyncio.CancelledError):
                raise
            if isinstance(cause, ServiceError):
                if cause.service is None:
                    cause.service = self.service
                raise cause from None
            if isinstance(cause, TimeoutError):
                raise ServiceError(f"no answer from the MCP server within {self.timeout:g} s", ErrorClass.TIMEOUT,
                                   service=self.service) from err
            raise translate_mcp(cause, self.service) from err

    async def close(self) -> None:
        """End the session and close the HTTP client (its keep-alive connections)."""
        await self._drop(self._held)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ----- the held session -----
    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None or self._http.is_closed:
            # trust_env off: a desktop's HTTP_PROXY must not capture calls to a GPU box on the LAN
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                                           limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
                                           trust_env=False)
        return self._http

    async def _session(self) -> _Held:
        """The open session, opening one (and sending ``initialize``) when there is none or it ended."""
        async with self._lock:
            if self._held is not None and not self._held.task.done():
                return self._held
            if self._held is not None:
                await self._drop(self._held)
            await _sdk()
            ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._hold(ready), name=f"mcp-session-{self.service}")
            self.sessions_opened += 1
            try:
                session = await asyncio.shield(ready)
            except BaseException:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            self._held = _Held(task, session)
            log.debug("%s: MCP session opened (%s so far)", self.service, self.sessions_opened)
            return self._held

    async def _hold(self, ready: asyncio.Future[ClientSession]) -> None:
        """Open the transport and session, hand the session out, and keep both open until cancelled."""
        from mcp import ClientSession  # loaded off the loop by _sdk()
        from mcp.client.streamable_http import streamable_http_client  # loaded off the loop by _sdk()

        try:
            async with streamable_http_client(self.url, http_client=self._client()) as (read, write, _):
                async with ClientSession(read, write, client_info=_client_info()) as session:
                    await session.initialize()
                    ready.set_result(session)
                    await asyncio.Event().wait()  # until cancelled by _drop; a transport failure ends it sooner
        except BaseException as err:
            if not ready.done():
                ready.set_exception(_leaf(err) if isinstance(err, Exception) else err)
            raise

    async def _cause(self, held: _Held | None, err: BaseException) -> BaseException:
        """The real failure: the SDK reports a dead transport to the caller only as "connection closed"."""
        leaf = _leaf(err)
        if held is None or isinstance(leaf, (ServiceError, TimeoutError, asyncio.CancelledError)):
            return leaf
        await asyncio.wait({held.task}, timeout=0.5)  # the transport's own error ends its task at once
        if held.task.done() and not held.task.cancelled() and held.task.exception() is not None:
            return _leaf(held.task.exception())  # type: ignore[arg-type]
        return leaf

    async def _drop(self, held: _Held | None) -> None:
        """End one held session (its task cancelled and awaited); later calls open a new one."""
        if held is None:
            return
        if self._held is held:
            self._held = None
        held.task.cancel()
        await asyncio.gather(held.task, return_exceptions=True)


async def _race(call: Coroutine[Any, Any, dict[str, Any]], holder: asyncio.Task[None], tool: str) -> dict[str, Any]:
    """Await the call unless the session's transport dies first (the SDK then leaves the call waiting forever)."""
    task = asyncio.ensure_future(call)
    try:
        await asyncio.wait({task, holder}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        error = None if holder.cancelled() else holder.exception()
        raise error if error is not None else ServiceError(f"the MCP session ended during {tool}", ErrorClass.RESET)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _call_tool(session: ClientSession, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call ``tool``; its dict result (list tools give ``{"result": [...]}``), or ToolError."""
    import mcp.types as mt  # loaded off the loop by _sdk()

    # send_request rather than call_tool: call_tool validates against output schemas and so sends a
    # tools/list first; we check the shapes we use ourselves.
    request = mt.ClientRequest(mt.CallToolRequest(params=mt.CallToolRequestParams(name=tool, arguments=arguments)))
    result = await session.send_request(request, mt.CallToolResult)
    text = "\n".join(c.text for c in result.content if isinstance(c, mt.TextContent))
    if result.isError:
        raise ToolError(tool, _tool_message(tool, text))
    if isinstance(result.structuredContent, dict):
        return result.structuredContent
    try:  # a tool annotated with a bare ``dict`` sends only the JSON text block
        value = json.loads(text) if text else None
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    raise ServiceError(f"{tool} returned no structured result", ErrorClass.BAD_RESPONSE)


def _client_info() -> Any:
    import mcp.types as mt  # loaded off the loop by _sdk()

    return mt.Implementation(name="backlot", version=__version__)


def _tool_message(tool: str, text: str) -> str:
    """``Error executing tool X: 'Unknown WanGP job_id: n'`` -> ``Unknown WanGP job_id: n``."""
    prefix = f"Error executing tool {tool}: "
    message = text[len(prefix):] if text.startswith(prefix) else text
    if len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":  # a KeyError keeps its quotes
        message = message[1:-1]
    return message.strip() or f"{tool} failed without a message"


def _leaf(err: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups; cancellations only if nothing else is there."""
    if isinstance(err, BaseExceptionGroup):
        leaves = [_leaf(e) for e in err.exceptions]
        return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])
    return err


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def translate_mcp(err: BaseException, service: str) -> ServiceError:
    """An httpx, MCP or pydantic error as a ServiceError a person can read (raise it ``from err``)."""
    import httpx
    from mcp.shared.exceptions import McpError  # loaded off the loop by _sdk()
    from pydantic import ValidationError

    if isinstance(err, httpx.TimeoutException):
        return ServiceError("no answer in time", ErrorClass.TIMEOUT, service=service)
    if isinstance(err, httpx.ConnectError):
        if _caused_by(err, ConnectionRefusedError):
            return ServiceError("connection refused (is Wan2GP running with --mcp?)", ErrorClass.REFUSED,
                                service=service)
        if _caused_by(err, socket.gaierror):
            return ServiceError("host name not found", ErrorClass.UNREACHABLE, service=service)
        return ServiceError(f"cannot connect: {err}", ErrorClass.UNREACHABLE, service=service)
    if isinstance(err, httpx.HTTPStatusError):
        status = err.response.status_code
        return ServiceError(f"{MCP_PATH} answered HTTP {status}", classify_status(status), service=service,
                            status=status)
    if isinstance(err, (httpx.RemoteProtocolError, httpx.NetworkError)):
        return ServiceError("connection dropped", ErrorClass.RESET, service=service)
    if isinstance(err, McpError):
        if err.error.message == "Session terminated":  # how the SDK reports a 404 from the endpoint
            return ServiceError(f"no MCP server at {MCP_PATH} (HTTP 404)", ErrorClass.BAD_RESPONSE, service=service)
        if err.error.message.lower().startswith("connection closed"):
            return ServiceError("connection dropped", ErrorClass.RESET, service=service)
        return ServiceError(f"MCP error: {err.error.message}", ErrorClass.BAD_RESPONSE, service=service)
    if isinstance(err, (ValidationError, ValueError)):
        return ServiceError("answered something that is not MCP", ErrorClass.BAD_RESPONSE, service=service)
    if isinstance(err, OSError):
        return ServiceError(f"network error: {err.strerror or err}", ErrorClass.UNREACHABLE, service=service)
    return ServiceError(f"unexpected error: {type(err).__name__}: {err}", ErrorClass.UNKNOWN, service=service)
