"""HealthMonitor: one coordinator per service; checks never overlap, failures back off, state is derived here."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import aiohttp

from backlot.services.connectivity.metrics import Metrics
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.connectivity.resilience import Backoff, CircuitBreaker
from backlot.services.errors import ErrorClass, ServiceError, translate
from backlot.services.events import EventBus, HealthChanged, HealthSampled
from backlot.services.models import HealthSample, ServiceRecord, ServiceState

log = logging.getLogger(__name__)
HARD_DOWN = (ErrorClass.REFUSED.value, ErrorClass.UNREACHABLE.value)
Checker = Callable[[aiohttp.ClientSession, ServiceRecord, aiohttp.ClientTimeout], Awaitable[HealthSample]]


class HealthMonitor:
    """Checks one service on a schedule and turns samples into up / degraded / down.

    The next check is scheduled when the current one ends. While the service is down the delay
    follows the reconnect backoff (or the open breaker's retry time), and meanwhile its port is
    watched (a TCP connect every ``PORT_POLL`` s): once a port that refused starts accepting again,
    it is checked at once, so a backend that comes back shows up within a second whoever restarted
    it. It logs once when the service goes down and once when it recovers.
    """

    PORT_POLL = 0.25

    def __init__(self, record: ServiceRecord, checker: Checker, pool: ConnectionPool, bus: EventBus,
                 metrics: Metrics, breaker: CircuitBreaker, *, interval: float, degraded_latency_ms: float,
                 degraded_error_rate: float, timeout: float = 5.0, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, start_delay: float = 0.0, window: int = 10) -> None:
        self.record = record
        self.checker = checker
        self.pool = pool
        self.bus = bus
        self.metrics = metrics
        self.breaker = breaker
        self.interval = interval
        self.degraded_latency_ms = degraded_latency_ms
        self.degraded_error_rate = degraded_error_rate
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(2.0, timeout))
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.start_delay = start_delay
        self.state = ServiceState.UNKNOWN
        self.last: HealthSample | None = None
        self.failures = 0  # consecutive failed checks
        self.down_since: float | None = None
        self.recent: deque[bool] = deque(maxlen=window)
        self.checks = 0
        self._wake = asyncio.Event()
        self._busy = asyncio.Lock()

    @property
    def service_id(self) -> str:
        """The monitored service's id."""
        return self.record.id

    def next_delay(self) -> float:
        """Seconds until the next check, from the state, the backoff and the breaker."""
        retry_in = self.breaker.retry_in()
        if retry_in is not None:
            return retry_in
        if self.failures:
            return self.backoff.delay(self.failures)
        return self.interval

    def set_interval(self, seconds: float) -> None:
        """Change the healthy-state interval (e.g. dashboard shown) and check soon under the new one."""
        self.interval = seconds
        self._wake.set()

    def set_timeout(self, seconds: float) -> None:
        """Change how long one check may take (from the next check on)."""
        self.timeout = aiohttp.ClientTimeout(total=seconds, sock_connect=min(2.0, seconds))

    def check_soon(self) -> None:
        """Wake the loop for an immediate check (the user's "reconnect")."""
        self._wake.set()

    async def run(self) -> None:
        """The coordinator loop; cancel the task to stop it."""
        if self.start_delay:
            await self._wait(self.start_delay)
        while True:
            await self.check_now()
            await self._wait(self.next_delay())

    async def _wait(self, seconds: float) -> None:
        self._wake.clear()
        watch = self.failures > 0 and seconds > self.PORT_POLL and self.record.port > 0
        try:
            if watch:
                await asyncio.wait_for(self._until_port_opens(), timeout=max(0.0, seconds))
            else:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def _until_port_opens(self) -> None:
        """Return when woken, or when the port, seen closed, accepts a connection again (the breaker then lets
        the next check through)."""
        seen_closed = False
        host = self.record.host
        while not self._wake.is_set():
            try:
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, self.record.port),
                                                         self.PORT_POLL)
            except (OSError, TimeoutError):
                seen_closed = True
            else:
                writer.close()
                if seen_closed:
                    self.breaker.probe_now()
                    return
            try:
                await asyncio.wait_for(self._wake.wait(), self.PORT_POLL)
            except TimeoutError:
                pass

    async def check_now(self) -> HealthSample | None:
        """Run one check unless one is running or the breaker is open; returns the sample taken."""
        if self._busy.locked():
            return None
        async with self._busy:
            if not self.breaker.allow():
                return None
            self.checks += 1
            try:
                sample = await self.checker(self.pool.session(self.service_id), self.record, self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # any failure, even a parser crash on garbage, is a classified sample
                serr = err if isinstance(err, ServiceError) else translate(err, self.service_id)
                if not isinstance(err, (ServiceError, aiohttp.ClientError, OSError, TimeoutError)):
                    serr = ServiceError(f"unexpected answer ({type(err).__name__})", ErrorClass.BAD_RESPONSE,
                                        service=self.service_id)
                sample = HealthSample(self.service_id, time.time(), False, None, serr.error_class.value,
                                      serr.args[0] if serr.args else str(serr))
                self.breaker.record_failure(serr.error_class, sample.message)
                if serr.error_class in (ErrorClass.RESET, ErrorClass.REFUSED, ErrorClass.TIMEOUT):
                    await self.pool.invalidate(self.service_id)  # reconnect with a fresh session next time
            else:
                self.breaker.record_success()
            self._apply(sample)
            return sample

    def _apply(self, sample: HealthSample) -> None:
        self.last = sample
        self.recent.append(sample.ok)
        t = sample.at
        self.metrics.record(f"success:{self.service_id}", t, 1.0 if sample.ok else 0.0)
        if sample.latency_ms is not None:
            self.metrics.record(f"latency:{self.service_id}", t, sample.latency_ms)
        if sample.queue_depth is not None:
            self.metrics.record(f"queue:{self.service_id}", t, float(sample.queue_depth))
        for v in sample.vram:
            self.metrics.record(f"vram_used:{self.service_id}:{v.device}", t, float(v.used))
        old = self.state
        new, reason = self._derive(sample)
        if old is ServiceState.DOWN and new is not ServiceState.DOWN:
            failed_run = self._failed_run
            self.recent.clear()  # the outage is over; judge the error rate afresh
            self.recent.append(True)
            new, reason = self._derive(sample)
        self.failures = 0 if sample.ok else self.failures + 1
        self.state = new
        self.bus.publish(HealthSampled(sample, new))
        if new is old:
            return
        if new is ServiceState.DOWN:
            self.down_since = self.clock()
            log.warning("%s is down: %s", self.service_id, reason)
        elif old is ServiceState.DOWN:
            down_for = self.clock() - (self.down_since or self.clock())
            log.info("%s recovered after %d failed check(s), down %.1f s", self.service_id, failed_run, down_for)
            self.down_since = None
        elif new is ServiceState.DEGRADED:
            log.info("%s is degraded: %s", self.service_id, reason)
        self.bus.publish(HealthChanged(self.service_id, old, new, sample, reason))

    @property
    def _failed_run(self) -> int:
        count = 0
        for ok in reversed(list(self.recent)[:-1]):
            if ok:
                break
            count += 1
        return count

    def _derive(self, sample: HealthSample) -> tuple[ServiceState, str]:
        if not sample.ok:
            reason = sample.message or (sample.error_class or "failed")
            if sample.error_class == ErrorClass.BUSY.value:
                return ServiceState.DEGRADED, f"busy ({reason})"
            # Nothing listening is certain; a timeout or a bad answer may be a hiccup, so the first is "degraded".
            if sample.error_class in HARD_DOWN or self.failures >= 1 or self.state is ServiceState.DOWN:
                return ServiceState.DOWN, reason
            return ServiceState.DEGRADED, reason
        errors = self.recent.count(False) / len(self.recent)
        if sample.latency_ms is not None and sample.latency_ms > self.degraded_latency_ms:
            return ServiceState.DEGRADED, f"slow: {sample.latency_ms:.0f} ms"
        if errors > self.degraded_error_rate:
            return ServiceState.DEGRADED, f"{errors:.0%} of recent checks failed"
        return ServiceState.UP, "ok"
