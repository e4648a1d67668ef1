"""EventBus subscription contract and the ring-buffer metrics."""
from __future__ import annotations

import logging

import pytest

from backlot.services.connectivity.metrics import Metrics
from backlot.services.events import DiscoveryFinished, Event, EventBus, MetricsSampled


def test_subscribe_by_type_and_unsubscribe() -> None:
    bus = EventBus()
    got: list[Event] = []
    every: list[Event] = []
    unsub = bus.subscribe(got.append, MetricsSampled)
    unsub_all = bus.subscribe(every.append)
    bus.publish(MetricsSampled("latency:x", 1.0, 2.0))
    bus.publish(DiscoveryFinished((), 1.0, 3))
    assert [type(e) for e in got] == [MetricsSampled]
    assert len(every) == 2
    unsub()
    unsub()  # twice is harmless
    bus.publish(MetricsSampled("latency:x", 2.0, 2.0))
    assert len(got) == 1 and bus.subscriber_count == 1
    unsub_all()
    assert bus.subscriber_count == 0


def test_a_failing_subscriber_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[Event] = []

    def broken(_: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    with caplog.at_level(logging.ERROR):
        bus.publish(DiscoveryFinished((), 1.0, 1))
    assert len(got) == 1 and "subscriber" in caplog.text


def test_metrics_ring_buffer_bounds_snapshot_and_since() -> None:
    m = Metrics(maxlen=5)
    for i in range(8):
        m.record("latency:a", float(i), float(i * 10))
    times, values = m.series("latency:a").snapshot()  # type: ignore[union-attr]
    assert times == [3.0, 4.0, 5.0, 6.0, 7.0] and values == [30, 40, 50, 60, 70]
    assert m.since(5.0, "latency:") == {"latency:a": ([6.0, 7.0], [60.0, 70.0])}
    for ok in (1, 1, 0, 1):
        m.record("success:a", 0, ok)
    assert m.success_rate("a") == 0.75 and m.success_rate("nope") is None
    assert m.names("latency") == ["latency:a"]
