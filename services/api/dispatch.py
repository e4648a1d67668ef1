"""Dispatch: method names to handlers, parameter validation, and the one place unknown exceptions become -32603.

Handlers are methods decorated with ``@rpc(name, Params)``; ``Methods.collect(obj)`` builds the table
from an object's decorated methods. A handler gets the caller's ``Session`` and its validated params.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from services.api.protocol import (ApiError, InternalError, InvalidParams, MethodNotFound, Request, encode_error,
                                   encode_result)

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
Handler = Callable[[Session, Any], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def rpc(name: str, params: type[Params] = NoParams) -> Callable[[F], F]:
    """Mark a coroutine method as the handler of ``name``, taking ``params``."""
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

    async def call(self, session: Session, request: Request) -> Any:
        """Validate and run; the handler's ApiError passes through, anything else is left to ``dispatch``."""
        method, params = self.validate(request)
        return await method.handler(session, params)

    async def dispatch(self, session: Session, request: Request) -> bytes | None:
        """Run one request and encode its answer; an unexpected failure is logged with the request id."""
        try:
            line = encode_result(request.id, await self.call(session, request))
        except ApiError as err:
            line = encode_error(request.id, err)
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
