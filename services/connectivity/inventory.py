"""What each service has (models, node classes), cached per service id: read at discovery, on demand, and again
when a job failed there for something it lacks."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from backlot.services.backends import registry
from backlot.services.backends.base import FailureCode
from backlot.services.backends.spec import Inventory
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.errors import BacklotError
from backlot.services.events import EventBus, JobUpdated, ServiceDiscovered, ServiceForgotten, ServiceUpdated
from backlot.services.keeper import TaskKeeper
from backlot.services.models import ServiceRecord

log = logging.getLogger(__name__)
CAPABILITY_OUTCOME = f"failed: {FailureCode.CAPABILITY.value}"


class InventoryCache:
    """Inventories by service id; the router reads them synchronously (``get``), never waiting on the network."""

    def __init__(self, bus: EventBus, pool: ConnectionPool, services: Callable[[], dict[str, ServiceRecord]],
                 timeout: float = 30.0) -> None:
        self.bus = bus
        self.pool = pool
        self._services = services
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(5.0, timeout))
        self._known: dict[str, Inventory] = {}
        self.keeper = TaskKeeper()  # one refresh at a time per service
        self._seen_failures: set[tuple[str, int]] = set()
        self._unsubscribe: list[Callable[[], None]] = []

    def get(self, service_id: str) -> Inventory | None:
        """The cached inventory, or None while it is not known."""
        return self._known.get(service_id)

    def start(self) -> None:
        """Follow discovery (read services not known yet) and jobs (re-read after a capability failure)."""
        self._unsubscribe += [self.bus.subscribe(self._on_service, ServiceDiscovered, ServiceUpdated,
                                                  ServiceForgotten),
                              self.bus.subscribe(self._on_job, JobUpdated)]

    async def refresh(self, service_id: str) -> Inventory | None:
        """Read a service's inventory now; on failure the previous one stays (None when there was none)."""
        rec = self._services().get(service_id)
        spec = registry.spec_for(rec.kind.value) if rec is not None else None
        if rec is None or spec is None or spec.inventory is None or not rec.usable:
            return None
        try:
            inv = await spec.inventory(self.pool.session(service_id), rec, self.timeout)
        except (BacklotError, aiohttp.ClientError, OSError, TimeoutError, ValueError, TypeError) as err:
            log.warning("could not read what %s has: %s", service_id, err)
            return self._known.get(service_id)
        self._known[service_id] = inv
        held = [f"{len(v)} {k}" for k, v in sorted(inv.models.items()) if v]  # empty folders say nothing
        log.info("%s has %s", service_id, ", ".join(held or [f"no model files in {len(inv.models)} folders"])
                 + (f", {len(inv.nodes)} node classes" if inv.nodes is not None else ""))
        return inv

    async def refresh_all(self, wait: float | None = None) -> None:
        """Read every service's inventory in the background; wait up to ``wait`` seconds (None: until all are read)."""
        for sid in list(self._services()):
            self.refresh_soon(sid)
        await self.keeper.wait(wait)  # slower ones go on; routing skips nobody until they answer

    def refresh_soon(self, service_id: str) -> None:
        """Start a refresh in the background (one at a time per service)."""
        self.keeper.spawn(f"inventory {service_id}", self.refresh(service_id), unique=True)

    async def stop(self) -> None:
        """Stop following events and cancel refreshes under way."""
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe.clear()
        await self.keeper.cancel_all()

    def _on_service(self, event: ServiceDiscovered | ServiceUpdated | ServiceForgotten) -> None:
        if isinstance(event, ServiceForgotten):
            self._known.pop(event.service_id, None)
        elif event.record.id not in self._known:
            self.refresh_soon(event.record.id)

    def _on_job(self, event: JobUpdated) -> None:
        attempts = event.job.attempts
        if not attempts or attempts[-1].outcome != CAPABILITY_OUTCOME:
            return
        key = (event.job.id, len(attempts))
        sid = attempts[-1].backend
        if key not in self._seen_failures and sid:
            self._seen_failures.add(key)
            log.info("job %s failed on %s for something it lacks; reading what it has again", event.job.id, sid)
            self.refresh_soon(sid)
