"""LiteLLM's exceptions rebuilt as our ServiceError: one plain sentence, classed, and never carrying a key."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import aiohttp

from backlot.services.errors import ErrorClass, ServiceError, translate

# Class names (anywhere in an exception's MRO) of transport failures raised by httpx or openai, matched by
# name so this module imports neither: litellm may run on an httpx transport with no aiohttp error inside.
_TIMEOUT_NAMES = {"TimeoutException", "APITimeoutError", "Timeout"}
_CONNECT_NAMES = {"ConnectError", "APIConnectionError", "NetworkError", "RemoteProtocolError"}


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, outermost first (litellm wraps the transport error several times)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(err: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(err).__mro__}


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """Short, with any key replaced (servers sometimes echo what they were sent)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    for prefix in ("litellm.", "OpenAIException - ", "Ollama_chatException - "):
        text = text.replace(prefix, "")
    return text[:200]


def translate_llm_error(err: BaseException, *, who: str, provider: str, model: str, key_configured: bool,
                        timeouts: tuple[float, float], secrets: Sequence[str]) -> ServiceError:
    """A ServiceError for what went wrong talking to ``who``; ``secrets`` never appear in it."""
    chain = list(_chain(err))
    connect_s, read_s = timeouts
    # The transport error at the bottom of the chain says more than litellm's wrapper (it calls a refused
    # connection an "InternalServerError" with status 500).
    for cause in chain:
        if isinstance(cause, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
            base = translate(cause)
            if base.error_class is ErrorClass.TIMEOUT:
                return ServiceError(f"{who} did not answer in time (limits {connect_s:g} s to connect, "
                                    f"{read_s:g} s between replies)", ErrorClass.TIMEOUT)
            if base.error_class in (ErrorClass.REFUSED, ErrorClass.UNREACHABLE, ErrorClass.RESET):
                return ServiceError(f"{who} unreachable: {base}", base.error_class)
            break
    if any(_names(e) & _TIMEOUT_NAMES for e in chain):
        return ServiceError(f"{who} did not answer in time (limits {connect_s:g} s to connect, {read_s:g} s "
                            "between replies)", ErrorClass.TIMEOUT)
    if any(_names(e) & _CONNECT_NAMES for e in chain):
        return ServiceError(f"{who} unreachable", ErrorClass.UNREACHABLE)
    status = getattr(err, "status_code", None)
    status = status if isinstance(status, int) else None
    names = _names(err)
    detail = _scrub(str(getattr(err, "message", "") or err), secrets)
    if status in (401, 403) or names & {"AuthenticationError", "PermissionDeniedError"}:
        suffix = "" if key_configured else ": none is configured"
        return ServiceError(f"invalid key for {provider}{suffix}", ErrorClass.CLIENT_ERROR, status=status or 401)
    if "ContextWindowExceededError" in names:
        return ServiceError(f"the prompt is too long for {model}", ErrorClass.CLIENT_ERROR, status=status)
    if status == 404 or "NotFoundError" in names:
        return ServiceError(f"{who} has no model {model!r}", ErrorClass.CLIENT_ERROR, status=404)
    if status == 429 or "RateLimitError" in names:
        return ServiceError(f"{who} is rate-limiting requests; try again later", ErrorClass.BUSY, status=429)
    if status is not None and 400 <= status < 500:
        return ServiceError(f"{who} refused the request: {detail}", ErrorClass.CLIENT_ERROR, status=status)
    if status is not None and status >= 500:
        return ServiceError(f"{who} failed (HTTP {status}): {detail}", ErrorClass.HTTP_ERROR, status=status)
    return ServiceError(f"{who}: {type(err).__name__}: {detail}", ErrorClass.UNKNOWN)
