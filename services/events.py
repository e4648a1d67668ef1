"""A typed, synchronous event bus: the core publishes, the GUI bridge and the API subscribe.

Every event is frozen and has a wire form: a class-level ``topic`` and a JSON-ready ``to_dict()``.
``ServiceDiscovered`` shares the ``service.updated`` topic with ``ServiceUpdated`` (its ``changes`` are
``["discovered"]``), so a client that follows one topic learns every service record's latest state.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from backlot.services.models import BreakerSnapshot, GpuSample, HealthSample, Job, ServiceRecord, ServiceState

if TYPE_CHECKING:
    from backlot.services.launch.console import ConsoleLine
    from backlot.services.launch.view import LaunchView

log = logging.getLogger(__name__)


def wire(value: Any) -> Any:
    """A value as plain JSON types: dataclasses become dicts, enums their values, tuples lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return wire(value.value)
    if isinstance(value, (list, tuple)):
        return [wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): wire(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Event:
    """Base of all events; ``to_dict()`` is the wire form published under ``topic``."""

    topic: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready payload (the fields, converted by ``wire``)."""
        return {f.name: wire(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class ServiceDiscovered(Event):
    """A service was seen for the first time (or a configured cloud model was added)."""

    topic: ClassVar[str] = "service.updated"
    record: ServiceRecord

    def to_dict(self) -> dict[str, Any]:
        """``{"service": record, "changes": ["discovered"]}``."""
        return {"service": self.record.to_dict(), "changes": ["discovered"]}


@dataclass(frozen=True)
class ServiceUpdated(Event):
    """A known service changed: moved port, new version, vanished (``record.present`` False) or came back."""

    topic: ClassVar[str] = "service.updated"
    record: ServiceRecord
    changes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"service": record, "changes": [...]}``."""
        return {"service": self.record.to_dict(), "changes": list(self.changes)}


@dataclass(frozen=True)
class ServiceForgotten(Event):
    """The user forgot a service: it is no longer listed or watched."""

    topic: ClassVar[str] = "service.forgotten"
    service_id: str


@dataclass(frozen=True)
class DiscoveryFinished(Event):
    """A discovery round ended; ``unanswered`` holds (url, reason) for explicit URLs that found nothing."""

    topic: ClassVar[str] = "discovery.finished"
    found: tuple[str, ...]
    duration_ms: float
    candidates: int
    unanswered: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HealthChanged(Event):
    """A service's health state changed."""

    topic: ClassVar[str] = "health.changed"
    service_id: str
    old: ServiceState
    new: ServiceState
    sample: HealthSample
    reason: str


@dataclass(frozen=True)
class HealthSampled(Event):
    """A health check finished (every check, not only changes)."""

    topic: ClassVar[str] = "health.sampled"
    sample: HealthSample
    state: ServiceState


@dataclass(frozen=True)
class BreakerChanged(Event):
    """A circuit breaker opened, half-opened or closed."""

    topic: ClassVar[str] = "breaker.changed"
    service_id: str
    snapshot: BreakerSnapshot


@dataclass(frozen=True)
class GpuSampled(Event):
    """NVML read the local GPUs."""

    topic: ClassVar[str] = "gpu.sampled"
    samples: tuple[GpuSample, ...]


@dataclass(frozen=True)
class MetricsSampled(Event):
    """A metrics series got a new point."""

    topic: ClassVar[str] = "metrics.sampled"
    series: str
    at: float
    value: float


@dataclass(frozen=True)
class JobUpdated(Event):
    """A job changed state, status, route or outputs; ``job`` is a snapshot taken at publish (don't mutate it)."""

    topic: ClassVar[str] = "job.updated"
    job: Job

    def to_dict(self) -> dict[str, Any]:
        """``{"job": Job.to_dict()}``."""
        return {"job": wire(self.job.to_dict())}


@dataclass(frozen=True)
class JobPreviewed(Event):
    """A running job has a new preview image (``path`` in its output folder; at most a few a second)."""

    topic: ClassVar[str] = "job.previewed"
    job_id: str
    path: str
    mime: str
    seq: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class LogRecorded(Event):
    """A log record, for the window's log view and API clients (``service``: the service it is about, if known)."""

    topic: ClassVar[str] = "log.record"
    level: str
    logger: str
    message: str
    at: float
    service: str | None = None


@dataclass(frozen=True)
class BlenderPlace(Event):
    """The user sent a job's output to Blender: each subscribed addon places ``path`` at its playhead.

    ``path`` is one of the job's outputs inside Backlot's output folder (the use case checked it); ``name`` is the
    file's name, ``prompt`` the job's (the addon names the strip after it). Only a session that names the topic
    receives it (``events.subscribe`` without topics does not subscribe to it)."""

    topic: ClassVar[str] = "blender.place"
    job_id: str
    seq: int
    path: str
    mime: str
    name: str
    prompt: str = ""


@dataclass(frozen=True)
class LaunchUpdated(Event):
    """A launch entry changed state (starting, running, restarting, failed …): its whole view."""

    topic: ClassVar[str] = "launch.updated"
    view: LaunchView

    def to_dict(self) -> dict[str, Any]:
        """The entry's view (``launch.list``'s row)."""
        return self.view.to_dict()


@dataclass(frozen=True)
class LaunchOutput(Event):
    """New lines on a launched backend's console (secrets already blanked out)."""

    topic: ClassVar[str] = "launch.console"
    name: str
    lines: tuple[ConsoleLine, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "lines": [{"n", "text"}]}``."""
        return {"name": self.name, "lines": [line.to_dict() for line in self.lines]}


EVENT_TYPES: tuple[type[Event], ...] = (ServiceDiscovered, ServiceUpdated, ServiceForgotten, DiscoveryFinished,
                                        HealthChanged, HealthSampled, BreakerChanged, GpuSampled, MetricsSampled,
                                        JobUpdated, JobPreviewed, LogRecorded, BlenderPlace, LaunchUpdated,
                                        LaunchOutput)
# topics a session receives only when it names them: "every topic" means the news, not requests to act (and a
# console's every line is more than most clients want)
OPT_IN_TOPICS = frozenset({BlenderPlace.topic, LaunchOutput.topic})


def types_for_topic(topic: str) -> tuple[type[Event], ...]:
    """The event classes published under a wire topic (empty for an unknown topic)."""
    return tuple(t for t in EVENT_TYPES if t.topic == topic)


E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Event)
G = TypeVar("G", bound=Event)
_Entry = tuple[tuple[type[Event], ...], Callable[[Any], None]]


class EventBus:
    """Publish events to subscribers by type; a failing subscriber is logged, never fatal to the publisher.

    Publish from the event loop's thread only (the log handler hands records over with ``call_soon_threadsafe``).
    """

    def __init__(self) -> None:
        self._subs: list[_Entry] = []

    @overload
    def subscribe(self, handler: Callable[[Event], None], /) -> Callable[[], None]: ...
    @overload
    def subscribe(self, handler: Callable[[E], None], t1: type[E], /) -> Callable[[], None]: ...
    @overload
    def subscribe(self, handler: Callable[[E | F], None], t1: type[E], t2: type[F], /) -> Callable[[], None]: ...
    @overload
    def subscribe(self, handler: Callable[[E | F | G], None], t1: type[E], t2: type[F], t3: type[G], /
                  ) -> Callable[[], None]: ...
    @overload
    def subscribe(self, handler: Callable[[Event], None], /, *types: type[Event]) -> Callable[[], None]: ...

    def subscribe(self, handler: Callable[[Any], None], /, *types: type[Event]) -> Callable[[], None]:
        """Call ``handler`` for events of ``types`` (all events if none); returns the unsubscribe function."""
        entry: _Entry = (tuple(types) or (Event,), handler)
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

    def stream(self, *types: type[E], maxsize: int = 1000) -> EventStream[E]:
        """An async iterator over events of ``types`` (all if none) through a queue of at most ``maxsize``."""
        return EventStream(self, types, maxsize)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are live (tests check owners unsubscribe)."""
        return len(self._subs)


class EventStream(Generic[E]):
    """A bounded queue of events for a slow consumer: when full, the oldest queued event is dropped.

    The oldest goes because the newest ``job.updated``/``service.updated`` carries the current state;
    ``dropped`` counts the losses (the socket API disconnects a client once it is non-zero).
    ``close()`` (or leaving ``async with``) unsubscribes and ends the iteration.
    """

    def __init__(self, bus: EventBus, types: tuple[type[E], ...], maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.dropped = 0
        self.closed = False
        self._queue: deque[E] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._unsubscribe = bus.subscribe(self._put, *types)

    def _put(self, event: E) -> None:
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    def __aiter__(self) -> EventStream[E]:
        return self

    async def __anext__(self) -> E:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            raise StopAsyncIteration
        return self._queue.popleft()

    def close(self) -> None:
        """Unsubscribe, drop what is queued and end the iteration (twice is harmless)."""
        if not self.closed:
            self.closed = True
            self._unsubscribe()
            self._queue.clear()
            self._ready.set()

    async def __aenter__(self) -> EventStream[E]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
