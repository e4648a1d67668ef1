"""Wan2GP's MCP server as the adapter sees it: one short MCP session per operation, tool results as dicts.

Wan2GP runs FastMCP with ``stateless_http=True`` (reference/wan2gp-mcp.md), so a session carries no server
state: opening one per operation costs an ``initialize`` round trip and makes reconnecting automatic. The
httpx client underneath is kept for the adapter's life, so TCP connections are reused.
"""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import mcp.types as mt
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from pydantic import ValidationError

from services import __version__
from services.errors import BacklotError, ErrorClass, ServiceError, classify_status

try:
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # mcp before 1.2x only has the older name (deprecated since)
    from mcp.client.streamable_http import streamablehttp_client as streamable_http_client  # type: ignore[assignment]

T = TypeVar("T")
MCP_PATH = "/mcp/"  # FastMCP answers /mcp with a 307 to /mcp/; post to the slash form directly
CLIENT = mt.Implementation(name="backlot", version=__version__)


class ToolError(BacklotError):
    """A tool ran and raised (``isError``); ``message`` is the server's sentence without the SDK's prefix."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.message = message


class ToolSession:
    """An initialised MCP session; ``call`` returns a tool's structured result."""

    def __init__(self, session: ClientSession) -> None:
        self._session = session

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call ``tool``; its dict result (list tools give ``{"result": [...]}``), or ToolError."""
        # send_request rather than call_tool: call_tool validates against output schemas and so sends a
        # tools/list first in every fresh session; we check the shapes we use ourselves.
        request = mt.ClientRequest(mt.CallToolRequest(params=mt.CallToolRequestParams(name=tool, arguments=arguments)))
        result = await self._session.send_request(request, mt.CallToolResult)
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


class McpLink:
    """Calls Wan2GP's tools over streamable HTTP; every operation has one deadline and one error family."""

    def __init__(self, base_url: str, *, service: str, timeout: float) -> None:
        self.url = base_url.rstrip("/") + MCP_PATH
        self.service = service
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            # trust_env off: a desktop's HTTP_PROXY must not capture calls to a GPU box on the LAN
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                                           limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
                                           trust_env=False)
        return self._http

    async def run(self, operation: Callable[[ToolSession], Awaitable[T]]) -> T:
        """Open a session, run ``operation`` in it within ``timeout`` seconds, close it; ServiceError or ToolError."""
        try:
            async with asyncio.timeout(self.timeout):
                async with streamable_http_client(self.url, http_client=self._client()) as (read, write, _):
                    async with ClientSession(read, write, client_info=CLIENT) as session:
                        await session.initialize()
                        return await operation(ToolSession(session))
        except TimeoutError as err:
            raise ServiceError(f"no answer from the MCP server within {self.timeout:g} s", ErrorClass.TIMEOUT,
                               service=self.service) from err
        except Exception as err:  # the SDK's task groups wrap everything in ExceptionGroups
            leaf = _leaf(err)
            if isinstance(leaf, (ToolError, ServiceError)):
                if isinstance(leaf, ServiceError) and leaf.service is None:
                    leaf.service = self.service
                raise leaf from None  # already our own family; the SDK's groups around it say nothing more
            raise translate_mcp(leaf, self.service) from err

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One tool call in its own session."""
        async def one(session: ToolSession) -> dict[str, Any]:
            return await session.call(tool, arguments)

        return await self.run(one)

    async def close(self) -> None:
        """Close the HTTP client (its keep-alive connections)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None


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
        return ServiceError(f"MCP error: {err.error.message}", ErrorClass.BAD_RESPONSE, service=service)
    if isinstance(err, (ValidationError, ValueError)):
        return ServiceError("answered something that is not MCP", ErrorClass.BAD_RESPONSE, service=service)
    if isinstance(err, OSError):
        return ServiceError(f"network error: {err.strerror or err}", ErrorClass.UNREACHABLE, service=service)
    return ServiceError(f"unexpected error: {type(err).__name__}: {err}", ErrorClass.UNKNOWN, service=service)
