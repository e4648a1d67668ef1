"""Wire constants, errors, message types and backoff of the addon's API client (stdlib only)."""
from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

PROTOCOL = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8770
# Wire codes (DESIGN.md "Local socket API").
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
UNAUTHORIZED, NO_BACKEND, UNKNOWN_JOB, TOO_LARGE, BUSY = -32001, -32002, -32003, -32004, -32005
# Client-side codes carried by the local exceptions (outside JSON-RPC's reserved range).
NOT_CONNECTED, TIMED_OUT = -1, -2
MAX_LINE = 64 * 1024 * 1024  # a reply with base64 outputs may be large; a longer line drops the connection

# Connection states, as shown in the Blender panel.
STOPPED, CONNECTING, CONNECTED, DISCONNECTED, UNAUTHORIZED_STATE = (
    "stopped", "connecting", "connected", "disconnected", "unauthorized")


class ClientError(Exception):
    """Base of the client's errors; ``code`` is the JSON-RPC error code or a negative local code."""

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = data


class RpcError(ClientError):
    """The server answered a request with a JSON-RPC error."""


class Unauthorized(RpcError):
    """The server refused the token (-32001)."""

    code = UNAUTHORIZED


class NotConnected(ClientError):
    """Backlot is not reachable, or the connection was lost before the reply came."""

    code = NOT_CONNECTED


class CallTimeout(ClientError):
    """No reply within the call's timeout."""

    code = TIMED_OUT


def rpc_error(error: dict[str, Any]) -> RpcError:
    """The exception for a JSON-RPC error object."""
    code = int(error.get("code", INTERNAL_ERROR))
    cls = Unauthorized if code == UNAUTHORIZED else RpcError
    return cls(str(error.get("message") or "request failed"), code, error.get("data"))


class Reply(NamedTuple):
    """The answer to a ``call_async`` request; exactly one of ``result`` / ``error`` is meaningful."""

    id: int
    method: str
    tag: Any
    result: Any = None
    error: ClientError | None = None


class Notification(NamedTuple):
    """A server notification, e.g. ``job.updated`` with the job dict as params."""

    method: str
    params: Any


class StateChanged(NamedTuple):
    """The connection state changed; ``message`` says why in one sentence."""

    state: str
    message: str = ""


Message = Reply | Notification | StateChanged


class Backoff:
    """Reconnect delays doubling from ``base`` to ``cap`` with ±20% jitter; ``reset()`` after a success."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] | None = None) -> None:
        self.base, self.cap, self._rand, self.attempt = base, cap, rand or _random, 0

    def next(self) -> float:
        """The next delay in seconds."""
        delay = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return float(delay * (0.8 + 0.4 * self._rand()))

    def reset(self) -> None:
        """Start again from ``base``."""
        self.attempt = 0


def _random() -> float:
    import random  # on the first reconnect only: the command line connects once, and imports no more than it uses

    return random.random()


def encode(obj: Any) -> bytes:
    """One NDJSON line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
