"""Dispatch: method names to handlers, parameter validation, and the one place unknown exceptions become -32603.

Handlers are methods decorated with ``@rpc(name, Params)``; ``Methods.collect(obj)`` builds the table
from an object's decorated methods. A handler gets the caller's ``Session`` and its validated params
and returns its result, or an awaitable of it when it has to wait: ``begin`` answers a handler that
did not need to wait at once, so the server spends no task (and no loop turn) on ``session.ping``.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from backlot.services.api.protocol import (
    ApiError,
    InternalError,
    InvalidParams,
    MethodNotFound,
    Request,
    encode_error,
    encode_result,
)

log = logging.getLogger(__name__)


class Params(BaseModel):
    """Base of every method's parameters: strict types, unknown names refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoParams(Params):
    """A method that takes nothing."""


class Hello(Params):
    """``session.hello``: the first request on every connection."""

    token: str
    client: str = ""
    protocol: int = 1


@dataclass
class Session:
    """One connection as handlers see it: who it is, and how to push a notification line to it."""

    id: int
    peer: str
    push: Callable[[bytes], bool]
    client: str = ""
    authenticated: bool = False
    failures: int = 0
    topics: set[str] = field(default_factory=set)


P = TypeVar("P", bound=Params)
Handler = Callable[[Session, Any], Any]
F = TypeVar("F", bound=Callable[..., Any])


def rpc(name: str, params: type[Params] = NoParams) -> Callable[[F], F]:
    """Mark a method as the handler of ``name``, taking ``params``; it returns the result or an awaitable of it."""
    def mark(fn: F) -> F:
        fn.__dict__["_rpc"] = (name, params)
        return fn
    return mark


@dataclass(frozen=True)
class Method:
    """A table entry."""

    name: str
    params: type[Params]
    handler: Handler


class Methods:
    """The dispatch table; ``dispatch`` answers one request as a response line (None for a notification)."""

    def __init__(self, methods: list[Method], on_close: Callable[[Session], None] | None = None) -> None:
        self.table = {m.name: m for m in methods}
        self.on_close = on_close

    @classmethod
    def collect(cls, obj: Any, on_close: Callable[[Session], None] | None = None) -> Methods:
        """Every ``@rpc`` method of ``obj``."""
        found = []
        for attr in dir(type(obj)):
            mark = getattr(getattr(type(obj), attr), "_rpc", None)
            if mark is not None:
                found.append(Method(mark[0], mark[1], getattr(obj, attr)))
        return cls(found, on_close)

    def validate(self, request: Request) -> tuple[Method, Params]:
        """The method and its parsed params; MethodNotFound or InvalidParams."""
        method = self.table.get(request.method)
        if method is None:
            raise MethodNotFound(f"unknown method {request.method!r}")
        if isinstance(request.params, list):
            raise InvalidParams(f"{request.method} takes named params (an object), not a list")
        try:
            return method, method.params.model_validate(request.params or {})
        except ValidationError as err:
            raise InvalidParams(f"invalid params for {request.method}: {_first_problem(err)}") from err

    def begin(self, session: Session, request: Request) -> bytes | None | Awaitable[bytes | None]:
        """Run a request as far as it goes without waiting: its answer line (None for a notification), or an
        awaitable that finishes it."""
        try:
            method, params = self.validate(request)
            result = method.handler(session, params)
        except Exception as err:  # noqa: BLE001 - handed to _answer, the one place that maps it
            return self._answer(request, session, error=err)
        if inspect.isawaitable(result):
            return self._wait(session, request, result)
        return self._answer(request, session, result)

    async def dispatch(self, session: Session, request: Request) -> bytes | None:
        """Run one request to its end and encode its answer."""
        started = self.begin(session, request)
        return await started if inspect.isawaitable(started) else started

    async def _wait(self, session: Session, request: Request, pending: Awaitable[Any]) -> bytes | None:
        try:
            result = await pending
        except Exception as err:  # noqa: BLE001 - handed to _answer, the one place that maps it
            return self._answer(request, session, error=err)
        return self._answer(request, session, result)

    def _answer(self, request: Request, session: Session, result: Any = None, error: Exception | None = None
                ) -> bytes | None:
        """The one place errors become wire codes: an ApiError keeps its own, anything else is -32603 and logged."""
        try:
            if error is None:
                line = encode_result(request.id, result)
            elif isinstance(error, ApiError):
                line = encode_error(request.id, error)
            else:
                raise error
        except Exception:
            log.exception("request %r (%s) from session %d failed", request.id, request.method, session.id)
            line = encode_error(request.id, InternalError(f"internal error (request {request.id!r}); see Backlot's log"))
        return line if request.has_id else None

    def closed(self, session: Session) -> None:
        """Tell the handlers a session ended (its subscriptions go)."""
        if self.on_close is not None:
            self.on_close(session)


def _first_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "params"
    text = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {text}{more}"
