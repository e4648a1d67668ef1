"""Reconnect backoff and a circuit breaker per service (both on an injected clock)."""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from enum import Enum

from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.models import BreakerSnapshot

Clock = Callable[[], float]


class Backoff:
    """Reconnect delays 1, 2, 4 … capped, each jittered by ±``jitter`` (injected random for tests)."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, jitter: float = 0.2,
                 rand: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.jitter, self._rand = base, cap, jitter, rand

    def delay(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (1-based)."""
        raw = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return float(min(self.cap, max(0.0, raw * (1 + self.jitter * (2 * self._rand() - 1)))))


class BreakerState(str, Enum):
    """Circuit breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed → open after ``threshold`` outage failures → half-open at ``retry_at`` → closed on success.

    Counts failures by error class; load ("busy") and our own bad requests never open it. Time
    comes from the injected monotonic ``clock``.
    """

    def __init__(self, name: str, clock: Clock, threshold: int = 3, backoff: Backoff | None = None,
                 on_change: Callable[[BreakerSnapshot], None] | None = None) -> None:
        self.name = name
        self.clock = clock
        self.threshold = threshold
        self.backoff = backoff or Backoff()
        self.on_change = on_change
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.by_class: Counter[str] = Counter()
        self.reason = ""
        self.opened_at: float | None = None
        self.retry_at: float | None = None
        self._trips = 0

    def allow(self) -> bool:
        """May a request go out now? An open breaker past ``retry_at`` turns half-open and lets one through."""
        if self.state is BreakerState.OPEN:
            if self.retry_at is not None and self.clock() >= self.retry_at:
                self._set(BreakerState.HALF_OPEN)
                return True
            return False
        return True

    def record_success(self) -> None:
        """A request succeeded: close the breaker and forget the failures."""
        changed = self.state is not BreakerState.CLOSED
        self.failures = 0
        self.by_class.clear()
        self.reason = ""
        self._trips = 0
        self.opened_at = self.retry_at = None
        self.state = BreakerState.CLOSED
        if changed and self.on_change:
            self.on_change(self.snapshot())

    def record_failure(self, error_class: ErrorClass, reason: str) -> None:
        """A request failed; outages count towards opening, load and client errors do not."""
        self.by_class[error_class.value] += 1
        if not error_class.is_outage:
            return
        self.failures += 1
        self.reason = reason
        if self.state is BreakerState.HALF_OPEN or (self.state is BreakerState.CLOSED and self.failures >= self.threshold):
            self._trips += 1
            self.opened_at = self.clock()
            self.retry_at = self.opened_at + self.backoff.delay(self._trips)
            self._set(BreakerState.OPEN)

    def probe_now(self) -> None:
        """Let the next request through as a half-open probe (the user asked to reconnect)."""
        if self.state is BreakerState.OPEN:
            self.retry_at = self.clock()

    def retry_in(self) -> float | None:
        """Seconds until a half-open probe is allowed (None unless open)."""
        if self.state is not BreakerState.OPEN or self.retry_at is None:
            return None
        return max(0.0, self.retry_at - self.clock())

    def snapshot(self) -> BreakerSnapshot:
        """Observable state for the GUI and the API."""
        return BreakerSnapshot(self.state.value, self.failures, self.reason, self.opened_at, self.retry_at,
                               dict(self.by_class), self.retry_in())

    def _set(self, state: BreakerState) -> None:
        self.state = state
        if self.on_change:
            self.on_change(self.snapshot())
