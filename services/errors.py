"""One error family for the core; transport errors are translated here, ``from err``."""
from __future__ import annotations

import asyncio
import errno
import socket
from enum import Enum

import aiohttp

from backlot.services.text import one_line


class ErrorClass(str, Enum):
    """What kind of failure a request met; the breaker and health monitor count by this."""

    REFUSED = "refused"            # nothing listens: the service is down
    TIMEOUT = "timeout"            # no answer in time: black hole, overload or a hung server
    UNREACHABLE = "unreachable"    # no route, DNS failure, network down
    RESET = "reset"                # connection dropped mid-request
    HTTP_ERROR = "http_error"      # a 5xx answer
    CLIENT_ERROR = "client_error"  # a 4xx answer (our request was wrong, or not authorised)
    BUSY = "busy"                  # 429/503: load, not death
    BAD_RESPONSE = "bad_response"  # garbage, HTML where JSON was due, a body over the limit
    UNKNOWN = "unknown"

    @property
    def is_outage(self) -> bool:
        """True for failures that mean the service is not there (they open the breaker)."""
        return self in (ErrorClass.REFUSED, ErrorClass.TIMEOUT, ErrorClass.UNREACHABLE, ErrorClass.RESET,
                        ErrorClass.HTTP_ERROR, ErrorClass.BAD_RESPONSE)


class BacklotError(Exception):
    """Base of every error Backlot raises on purpose."""


class ServiceError(BacklotError):
    """A request to a backend failed; ``error_class`` says how, the message says it plainly."""

    def __init__(self, message: str, error_class: ErrorClass = ErrorClass.UNKNOWN, *,
                 service: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.service = service
        self.status = status

    def __str__(self) -> str:
        base = super().__str__()
        return f"{self.service}: {base}" if self.service else base


class CircuitOpenError(ServiceError):
    """The breaker for this service is open; no request was sent."""


def classify_status(status: int) -> ErrorClass:
    """Map an HTTP status to an error class."""
    if status in (429, 503):
        return ErrorClass.BUSY
    if status >= 500:
        return ErrorClass.HTTP_ERROR
    return ErrorClass.CLIENT_ERROR


def translate(err: BaseException, service: str | None = None) -> ServiceError:
    """Turn an aiohttp/OS/asyncio error into a ServiceError a person can read (raise it ``from err``)."""
    if isinstance(err, ServiceError):
        return err
    if isinstance(err, (asyncio.TimeoutError, aiohttp.ServerTimeoutError, TimeoutError)):
        return ServiceError("no answer in time", ErrorClass.TIMEOUT, service=service)
    if isinstance(err, aiohttp.ClientResponseError):
        return ServiceError(f"HTTP {err.status} {err.message}".strip(), classify_status(err.status),
                            service=service, status=err.status)
    if isinstance(err, aiohttp.ClientConnectorDNSError) or isinstance(getattr(err, "os_error", None), socket.gaierror):
        return ServiceError("host name not found", ErrorClass.UNREACHABLE, service=service)
    if isinstance(err, aiohttp.ClientConnectorError):
        os_err = err.os_error
        if isinstance(os_err, ConnectionRefusedError) or getattr(os_err, "errno", None) == errno.ECONNREFUSED:
            return ServiceError("connection refused (is it running?)", ErrorClass.REFUSED, service=service)
        return ServiceError(f"cannot connect: {os_err.strerror or os_err}", ErrorClass.UNREACHABLE, service=service)
    if isinstance(err, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionResetError,
                        aiohttp.ClientOSError)):
        return ServiceError("connection dropped", ErrorClass.RESET, service=service)
    if isinstance(err, (aiohttp.ContentTypeError, ValueError, UnicodeDecodeError)):
        return ServiceError("answered with something that is not the expected JSON", ErrorClass.BAD_RESPONSE,
                            service=service)
    if isinstance(err, aiohttp.ClientError):
        return ServiceError(f"request failed: {type(err).__name__}", ErrorClass.UNKNOWN, service=service)
    if isinstance(err, OSError):
        return ServiceError(f"network error: {err.strerror or err}", ErrorClass.UNREACHABLE, service=service)
    return ServiceError(f"unexpected error: {type(err).__name__}", ErrorClass.UNKNOWN, service=service)
