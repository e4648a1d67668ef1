"""Event topics for subscribers: which bus events each wire name carries, fanned out to sessions.

One bus subscription per topic (made when the first session subscribes, removed with the last):
each event is encoded once and the same line is pushed to every subscribed session. A session
whose send buffer is full is dropped by its ``push`` (the server's rule), never waited on.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from backlot.services.api.dispatch import Session
from backlot.services.api.protocol import encode_notification
from backlot.services.events import EVENT_TYPES, Event, EventBus, types_for_topic

log = logging.getLogger(__name__)


def topics() -> dict[str, tuple[type[Event], ...]]:
    """Wire name -> the event classes published under it."""
    return {t.topic: types_for_topic(t.topic) for t in EVENT_TYPES}


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

    def _sender(self, name: str) -> Callable[[Event], None]:
        def send(event: Event) -> None:
            subs = self._sessions.get(name)
            if not subs:
                return
            line = encode_notification(name, event.to_dict())
            for session in list(subs.values()):
                session.push(line)
        return send
