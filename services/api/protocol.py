"""Framing and wire format of the socket API: NDJSON lines carrying JSON-RPC 2.0, and the error family.

Nothing here knows a method or a connection: it reads one line with a size limit, turns it into a
``Request`` or an ``ApiError``, and encodes answers. The server and the dispatcher build on it.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 1 << 20  # a request line larger than this is refused without being buffered whole
PROTOCOL_VERSION = 1
RequestId = str | int | None


class ApiError(Exception):
    """An error with its JSON-RPC code; ``to_error()`` is what goes on the wire."""

    code = -32603

    def __init__(self, message: str, data: Any = None, *, code: int | None = None,
                 request_id: RequestId = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        self.request_id = request_id  # set when the error answers a request whose id could be read
        if code is not None:
            self.code = code

    def to_error(self) -> dict[str, Any]:
        """The ``error`` member of a JSON-RPC response."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


class ParseError(ApiError):
    """The line is not UTF-8 JSON."""

    code = -32700


class InvalidRequest(ApiError):
    """Valid JSON but not a JSON-RPC 2.0 request (a batch array included)."""

    code = -32600


class MethodNotFound(ApiError):
    """No such method."""

    code = -32601


class InvalidParams(ApiError):
    """The method exists but its parameters are wrong."""

    code = -32602


class InternalError(ApiError):
    """Something failed inside Backlot; the log has the details under the request id."""

    code = -32603


class Unauthorized(ApiError):
    """No ``session.hello`` with the right token yet."""

    code = -32001


class NoBackend(ApiError):
    """No backend can serve the request."""

    code = -32002


class UnknownJob(ApiError):
    """No job with that id or number."""

    code = -32003


class TooLarge(ApiError):
    """A message over the size limit."""

    code = -32004


class Busy(ApiError):
    """Too many requests in flight on this connection, or too many connections."""

    code = -32005


@dataclass(frozen=True)
class Request:
    """One JSON-RPC request; ``id`` is absent for a notification (no answer is sent)."""

    method: str
    params: dict[str, Any] | list[Any] | None
    id: RequestId
    has_id: bool


class LineTooLong(Exception):
    """Raised by ``read_line`` after an over-long line was skipped up to its newline."""


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line (without the newline), None at end of stream; LineTooLong for a line over the reader's limit.

    The reader is created with ``limit=max_line``: ``readuntil`` stops with LimitOverrunError once that
    much is buffered without a newline, so an over-long line is discarded piece by piece and never
    held whole (the StreamReader stops reading the socket at twice its limit).
    """
    try:
        return (await reader.readuntil(b"\n"))[:-1]
    except asyncio.IncompleteReadError as err:
        return err.partial or None  # a last line without a newline still counts
    except asyncio.LimitOverrunError as err:
        await _skip_line(reader, err.consumed)
        raise LineTooLong() from None


async def _skip_line(reader: asyncio.StreamReader, consumed: int) -> None:
    while True:
        await reader.readexactly(consumed)  # drop what is buffered so far; the rest of the line follows
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.IncompleteReadError:
            return
        except asyncio.LimitOverrunError as err:
            consumed = err.consumed


def parse_request(line: bytes) -> Request:
    """Decode and validate one line; raises ParseError or InvalidRequest (with the id when one was readable)."""
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ParseError("parse error: the line is not UTF-8 JSON") from err
    if isinstance(msg, list):
        raise InvalidRequest("batches not supported: send one request per line")
    if not isinstance(msg, dict):
        raise InvalidRequest("invalid request: expected a JSON object")
    has_id = "id" in msg
    rid = msg.get("id")
    if has_id and not _valid_id(rid):
        raise InvalidRequest("invalid request: id must be a string, an integer or null")
    err_id = rid if has_id else None
    if msg.get("jsonrpc") != "2.0":
        raise InvalidRequest('invalid request: "jsonrpc" must be "2.0"', request_id=err_id)
    method = msg.get("method")
    if not isinstance(method, str) or not method:
        raise InvalidRequest('invalid request: "method" must be a non-empty string', request_id=err_id)
    params = msg.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        raise InvalidRequest('invalid request: "params" must be an object', request_id=err_id)
    return Request(method, params, rid, has_id)


def _valid_id(rid: Any) -> bool:
    return rid is None or isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool))


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


def encode_result(rid: RequestId, result: Any) -> bytes:
    """A success response line."""
    return _dump({"jsonrpc": "2.0", "id": rid, "result": result})


def encode_error(rid: RequestId, error: ApiError) -> bytes:
    """An error response line."""
    return _dump({"jsonrpc": "2.0", "id": rid, "error": error.to_error()})


def encode_notification(method: str, params: Any) -> bytes:
    """A server-to-client notification line (no id)."""
    return _dump({"jsonrpc": "2.0", "method": method, "params": params})
