"""Log records as bus events (``LogRecorded``), for the window's log view and API clients."""
from __future__ import annotations

import asyncio
import logging
import re
import threading

from backlot.services.text import one_line
from backlot.services.events import EventBus, LogRecorded

# A service id (kind@host:port) named in a message, when the record carries no ``service`` extra.
_SERVICE_ID = re.compile(r"\b([a-z][a-z0-9_-]*@[\w.\-\[\]:]+:\d+)")


class BusLogHandler(logging.Handler):
    """Publishes every record it gets as ``LogRecorded`` on the bus, on the loop's thread.

    Records from any thread are handed to the loop with ``call_soon_threadsafe``, so subscribers
    always run on the loop and never inside the code that logged. A record logged while a
    ``LogRecorded`` is being delivered (a subscriber that logs) is not published, so nothing loops.
    """

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.bus = bus
        self.loop = loop
        self._delivering = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to the loop as an event (never raises, never recurses)."""
        if getattr(self._delivering, "active", False):
            return
        try:
            message = one_line(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                message = f"{message}: {one_line(str(record.exc_info[1])) or type(record.exc_info[1]).__name__}"
            service = getattr(record, "service", None)
            if service is None and (found := _SERVICE_ID.search(message)):
                service = found.group(1)
            event = LogRecorded(record.levelname, record.name, message, record.created,
                                str(service) if service is not None else None)
            self.loop.call_soon_threadsafe(self._deliver, event)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass
        except Exception:
            self.handleError(record)

    def _deliver(self, event: LogRecorded) -> None:
        self._delivering.active = True
        try:
            self.bus.publish(event)
        finally:
            self._delivering.active = False

    def install(self, logger: logging.Logger | None = None) -> None:
        """Attach to ``logger`` (the root logger by default)."""
        (logger or logging.getLogger()).addHandler(self)

    def remove(self, logger: logging.Logger | None = None) -> None:
        """Detach from ``logger`` (the root logger by default)."""
        (logger or logging.getLogger()).removeHandler(self)
