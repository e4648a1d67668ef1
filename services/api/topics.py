"""Event topics for subscribers: which bus events each wire name carries, fanned out to sessions.

One bus subscription per topic (made when the first session subscribes, removed with the last):
each event is encoded once and the same line is pushed to every subscribed session. A session
whose send buffer is full is dropped by its ``push`` (the server's rule), never waited on.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from services.api.dispatch import Session
from services.api.protocol import encode_notification
from services.events import Event, EventBus, GpuSampled, HealthSampled, JobUpdated, ServiceDiscovered, ServiceUpdated

log = logging.getLogger(__name__)

# Until every event class declares its wire name (``topic``), these are the ones the API serves.
_FALLBACK: dict[str, tuple[type[Event], ...]] = {
    "job.updated": (JobUpdated,),
    "service.updated": (ServiceDiscovered, ServiceUpdated),
    "health.sampled": (HealthSampled,),
    "gpu.sampled": (GpuSampled,),
}


def topics() -> dict[str, tuple[type[Event], ...]]:
    """Wire name -> event classes, from the classes' ``topic`` attributes (or the built-in table)."""
    out: dict[str, tuple[type[Event], ...]] = {}
    stack = list(Event.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        name = cls.__dict__.get("topic")
        if isinstance(name, str):
            out[name] = (*out.get(name, ()), cls)
    return out or dict(_FALLBACK)


def payload(event: Event) -> Any:
    """The notification's params: the event's own ``to_dict()``, else its fields made JSON-ready."""
    to_dict = getattr(event, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return _plain(event)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class EventFanout:
    """Sessions subscribed per topic, one bus subscription per topic in use."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.known = topics()
        self._sessions: dict[str, dict[int, Session]] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}

    def add(self, session: Session, names: list[str]) -> None:
        """Subscribe a session to topics (names must be known: check with ``unknown`` first)."""
        for name in names:
            subs = self._sessions.setdefault(name, {})
            subs[session.id] = session
            session.topics.add(name)
            if name not in self._unsubscribe:
                self._unsubscribe[name] = self.bus.subscribe(self._sender(name), *self.known[name])

    def remove(self, session: Session, names: list[str] | None = None) -> None:
        """Unsubscribe a session from some topics (all when ``names`` is None)."""
        for name in list(session.topics if names is None else names):
            session.topics.discard(name)
            subs = self._sessions.get(name, {})
            subs.pop(session.id, None)
            if not subs and name in self._unsubscribe:
                self._unsubscribe.pop(name)()
                self._sessions.pop(name, None)

    def unknown(self, names: list[str]) -> list[str]:
        """Names that are not topics."""
        return [n for n in names if n not in self.known]

    def close(self) -> None:
        """Drop every bus subscription."""
        for unsub in self._unsubscribe.values():
            unsub()
        self._unsubscribe.clear()
        self._sessions.clear()

    def _sender(self, name: str) -> Callable[[Event], None]:
        def send(event: Event) -> None:
            subs = self._sessions.get(name)
            if not subs:
                return
            line = encode_notification(name, payload(event))
            for session in list(subs.values()):
                session.push(line)
        return send
