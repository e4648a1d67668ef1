"""Backoff, retry and circuit-breaker timing on a fake clock: no sleeps."""
from __future__ import annotations

import pytest

from backlot.services.connectivity.resilience import Backoff, CircuitBreaker
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.models import BreakerSnapshot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    exact = Backoff(base=1, cap=60, jitter=0)
    assert [exact.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    low, high = Backoff(1, 60, 0.2, rand=lambda: 0.0), Backoff(1, 60, 0.2, rand=lambda: 1.0)
    assert low.delay(3) == pytest.approx(3.2) and high.delay(3) == pytest.approx(4.8)
    assert high.delay(10) == 60  # jitter never pushes past the cap


def test_breaker_opens_after_threshold_and_half_opens_at_retry_time() -> None:
    clock = FakeClock()
    changes: list[BreakerSnapshot] = []
    b = CircuitBreaker("svc", clock, threshold=3, backoff=Backoff(1, 60, 0), on_change=changes.append)
    for _ in range(2):
        b.record_failure(ErrorClass.REFUSED, "connection refused")
        assert b.allow()
    b.record_failure(ErrorClass.REFUSED, "connection refused")
    snap = b.snapshot()
    assert (snap.state, snap.failures, snap.reason, snap.opened_at, snap.retry_at) == (
        "open", 3, "connection refused", 1000.0, 1001.0)
    assert not b.allow()
    clock.now += 0.999
    assert not b.allow() and b.retry_in() == pytest.approx(0.001)
    clock.now += 0.001
    assert b.allow() and b.state.value == "half_open"
    b.record_failure(ErrorClass.TIMEOUT, "no answer in time")  # failed probe: open again, longer wait
    assert b.state.value == "open" and b.retry_at == pytest.approx(clock.now + 2)
    clock.now += 2
    assert b.allow()
    b.record_success()
    assert b.state.value == "closed" and b.failures == 0 and b.retry_at is None
    assert [c.state for c in changes] == ["open", "half_open", "open", "half_open", "closed"]
    assert changes[0].failures_by_class == {"refused": 3}


def test_busy_and_client_errors_never_open_the_breaker() -> None:
    b = CircuitBreaker("svc", FakeClock(), threshold=1)
    for _ in range(10):
        b.record_failure(ErrorClass.BUSY, "429")
        b.record_failure(ErrorClass.CLIENT_ERROR, "400")
    assert b.state.value == "closed" and b.failures == 0
    assert b.snapshot().failures_by_class == {"busy": 10, "client_error": 10}


def test_probe_now_lets_a_user_reconnect_skip_the_wait() -> None:
    clock = FakeClock()
    b = CircuitBreaker("svc", clock, threshold=1, backoff=Backoff(30, 60, 0))
    b.record_failure(ErrorClass.REFUSED, "refused")
    assert not b.allow()
    b.probe_now()
    assert b.allow()
