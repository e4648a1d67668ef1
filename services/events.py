"""A typed, synchronous event bus: the core publishes, the GUI bridge and the API subscribe."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.models import BreakerSnapshot, GpuSample, HealthSample, ServiceRecord, ServiceState

log = logging.getLogger(__name__)


class Event:
    """Base of all events."""


@dataclass(frozen=True)
class ServiceDiscovered(Event):
    """A service was seen for the first time."""

    record: ServiceRecord


@dataclass(frozen=True)
class ServiceUpdated(Event):
    """A known service changed: moved port, new version, vanished (``record.present`` False) or came back."""

    record: ServiceRecord
    changes: tuple[str, ...]


@dataclass(frozen=True)
class DiscoveryFinished(Event):
    """A discovery round ended."""

    found: tuple[str, ...]
    duration_ms: float
    candidates: int


@dataclass(frozen=True)
class HealthChanged(Event):
    """A service's health state changed."""

    service_id: str
    old: ServiceState
    new: ServiceState
    sample: HealthSample
    reason: str


@dataclass(frozen=True)
class HealthSampled(Event):
    """A health check finished (every check, not only changes)."""

    sample: HealthSample
    state: ServiceState


@dataclass(frozen=True)
class BreakerChanged(Event):
    """A circuit breaker opened, half-opened or closed."""

    service_id: str
    snapshot: BreakerSnapshot


@dataclass(frozen=True)
class GpuSampled(Event):
    """NVML read the local GPUs."""

    samples: tuple[GpuSample, ...]


@dataclass(frozen=True)
class MetricsSampled(Event):
    """A metrics series got a new point."""

    series: str
    at: float
    value: float


E = TypeVar("E", bound=Event)
Handler = Callable[[Any], None]


class EventBus:
    """Publish events to subscribers by type; a failing subscriber is logged, never fatal to the publisher."""

    def __init__(self) -> None:
        self._subs: list[tuple[tuple[type[Event], ...], Handler]] = []

    def subscribe(self, handler: Callable[[Any], None], *types: type[Event]) -> Callable[[], None]:
        """Call ``handler`` for events of ``types`` (all events if none); returns the unsubscribe function."""
        entry = (tuple(types) or (Event,), handler)
        self._subs.append(entry)

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber, in subscription order."""
        for types, handler in list(self._subs):
            if isinstance(event, types):
                try:
                    handler(event)
                except Exception:
                    log.exception("event subscriber %r failed on %s", handler, type(event).__name__)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are live (tests check owners unsubscribe)."""
        return len(self._subs)


@dataclass(frozen=True)
class JobUpdated(Event):
    """A job changed state, status, route or outputs."""

    job: Any
