"""ControlCenter: the composition root. It owns discovery, the pool, health monitors, GPU sampling and metrics."""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backlot.services.application.service import ApplicationService, CoreParts
from backlot.services.backends import registry
from backlot.services.backends.base import Backend
from backlot.services.config import Settings
from backlot.services.connectivity.discovery import Discovery, DiscoveryResult
from backlot.services.connectivity.gpu import GpuSampler
from backlot.services.connectivity.health import HealthMonitor
from backlot.services.connectivity.inventory import InventoryCache
from backlot.services.connectivity.metrics import Metrics
from backlot.services.connectivity.pool import ConnectionPool
from backlot.services.connectivity.resilience import Backoff, CircuitBreaker
from backlot.services.events import (
    BreakerChanged,
    EventBus,
    GpuSampled,
    MetricsSampled,
    ServiceDiscovered,
    ServiceForgotten,
    ServiceUpdated,
)
from backlot.services.jobs.manager import JobManager
from backlot.services.jobs.router import Router, ServiceHealth
from backlot.services.jobs.store import JobStore
from backlot.services.instance import forget_instance, record_instance
from backlot.services.jobs.validate import InvalidJob
from backlot.services.jobs.vram import VramEstimator
from backlot.services.keeper import TaskKeeper
from backlot.services.launch.entry import LaunchEntry
from backlot.services.launch.supervisor import Launcher
from backlot.services.logbus import BusLogHandler
from backlot.services.models import FoundBy, Origin, ServiceKind, ServiceRecord, ServiceState
from backlot.services.tasks import SchemaError

if TYPE_CHECKING:
    from backlot.services.api.server import ApiServer

log = logging.getLogger(__name__)


class ControlCenter:
    """Starts and stops everything in order; the GUI and the API talk to the core through this object."""

    def __init__(self, settings: Settings, bus: EventBus | None = None, *, clock: Callable[[], float] = time.monotonic,
                 gpu: GpuSampler | None = None, discover_on_start: bool = True, run_queue: bool = True,
                 serve_api: bool = False, launch: bool | None = None) -> None:
        self.settings = settings
        self.bus = bus or EventBus()
        self.clock = clock
        self.metrics = Metrics()
        self.pool = ConnectionPool()
        self.discovery = Discovery(settings, self.bus)
        self.gpu = gpu or GpuSampler()
        self.monitors: dict[str, HealthMonitor] = {}
        self.cloud: dict[str, ServiceRecord] = {}  # configured cloud models: never probed, polled or marked vanished
        self.breakers: dict[str, CircuitBreaker] = {}
        self.gpu_samples: tuple[Any, ...] = ()
        self.store = JobStore(settings.data_path / "jobs.sqlite3")
        self.estimator = VramEstimator(settings, self.store)
        self.inventory = InventoryCache(self.bus, self.pool, lambda: self.services, timeout=settings.health_timeout * 6)
        self.router = Router(settings, self._routable, self.health_view,
                             lambda sid: self.jobs.active_on(sid), self.estimator.estimate, self.inventory.get)
        self.jobs = JobManager(settings, self.store, self.router, self.adapter, self.bus, self.estimator,
                               self.vram_used, clock, check_service=self._check_service, prepare=self.prepare_params,
                               backend_exit=self._backend_exit)
        # Starts, watches and restarts the backends the settings' launch entries name (not in a guest beside a
        # running instance: that instance runs them).
        self.launcher = Launcher(settings, self.bus, lambda: self.pool.session("launcher"),
                                 on_ready=self._launched_ready, on_exit=self.jobs.backend_exited,
                                 secrets=self._secrets)
        self.launch_enabled = run_queue if launch is None else launch
        self._token: str | None = None
        self._adapters: dict[str, Backend] = {}
        self.dashboard_visible = False
        self.discover_on_start = discover_on_start
        self.run_queue = run_queue  # False: a guest beside a running instance runs only the jobs it submits
        self.keeper = TaskKeeper()  # discovery and GPU loops, one health monitor per service, retirements
        self._unsubscribe: list[Callable[[], None]] = []
        self._log_handler: BusLogHandler | None = None
        self._started = False
        self.serve_api = serve_api  # the instance serves the socket API; tests and tools build one without it
        self.api: ApiServer | None = None
        self.shutdown_requested = asyncio.Event()  # set by the API's app.shutdown; the owner stops the center
        # The one front door: the API's handlers and the window's controllers call its use cases.
        self.application = ApplicationService(settings, self.jobs, CoreParts(
            services=lambda: self.services, monitors=self.monitors, metrics=self.metrics,
            gpus=lambda: self.gpu_samples, health=self.health_view, session=self.pool.session,
            discover=self.discover, forget=self.forget, reconnect=self.reconnect, prepare=self.prepare_params,
            retune=self.retune, publish=self.bus.publish, launcher=self.launcher if self.launch_enabled else None,
            listeners=lambda topic: self.api.subscribers(topic) if self.api is not None else ()))

    @property
    def services(self) -> dict[str, ServiceRecord]:
        """Known services by id: discovered and configured URLs (discovery's table) plus configured cloud models."""
        return {**self.discovery.services, **self.cloud}

    async def start(self) -> None:
        """Subscribe, discover, start a monitor per service, GPU sampling and background discovery."""
        if self._started:
            return
        await self.store.open()  # a read-only or full data folder stops start-up here, with a clear sentence
        self._started = True
        self._log_handler = BusLogHandler(self.bus, asyncio.get_running_loop())
        self._log_handler.install()
        self._unsubscribe.append(self.bus.subscribe(self._on_service, ServiceDiscovered, ServiceUpdated))
        gpu_up = asyncio.create_task(self.gpu.start(), name="gpu-start")  # NVML comes up during the first discovery
        try:
            if self.discover_on_start:
                await self.discover()
                await self.inventory.refresh_all(wait=self.settings.health_timeout)  # known from the first job on
        finally:
            await gpu_up
        self.inventory.start()
        self._add_configured()
        await self.jobs.start(recover=self.run_queue)
        if self.launch_enabled:
            await self.launcher.start()
        self.keeper.spawn("discovery-loop", self._discovery_loop())
        if self.gpu.available:
            self.keeper.spawn("gpu-sampler", self._gpu_loop())
        if self.serve_api:  # last: requests may only arrive once the jobs have been recovered
            from backlot.services.api.factory import create_server  # loaded here: not on the window's way up

            self.api = await create_server(self)
            await self.api.start()
            # clients (the CLI, the Blender addon) find this instance's address here, whichever front it has
            await asyncio.to_thread(record_instance, self.settings.data_path, self.api.host, self.api.port,
                                    self.settings.paths.config_dir)

    async def discover(self, **kwargs: Any) -> DiscoveryResult:
        """Run one discovery round now (monitors follow from the events); what each server has is read again too."""
        result = await self.discovery.run(**kwargs)
        await self.inventory.refresh_all(wait=0)  # in the background: a server's new models count from now on
        return result

    def set_dashboard_visible(self, visible: bool) -> None:
        """Check faster while someone is looking at the dashboard."""
        self.dashboard_visible = visible
        for m in self.monitors.values():
            m.set_interval(self._interval())

    def retune(self) -> None:
        """Health and discovery timing from the settings as they are now (saved while running): every monitor's
        interval and timeout, and the background discovery's next round."""
        for m in self.monitors.values():
            m.set_timeout(self.settings.health_timeout)
            m.set_interval(self._interval())
        if self._started:
            self.keeper.spawn("retune discovery-loop", self._restart_discovery_loop())

    async def _restart_discovery_loop(self) -> None:
        await self.keeper.cancel("discovery-loop")
        self.keeper.spawn("discovery-loop", self._discovery_loop())

    def reconnect(self, service_id: str) -> bool:
        """Ask a service's monitor to check now (a user's "reconnect")."""
        m = self.monitors.get(service_id)
        if m is None:
            return False
        m.breaker.probe_now()
        m.check_soon()
        self.inventory.refresh_soon(service_id)  # a model or node pack installed meanwhile counts from now on
        return True

    async def forget(self, service_id: str) -> bool:
        """Stop watching a service and drop it from the registry (publishes ``ServiceForgotten``)."""
        await self._stop_monitor(service_id)
        if self.cloud.pop(service_id, None) is not None:
            self.bus.publish(ServiceForgotten(service_id))
            return True
        return self.discovery.forget(service_id)

    def _add_configured(self) -> None:
        """Services a kind brings from configuration (cloud LLM models) become routable, without health polling."""
        options = self.settings.backend_options()
        for spec in registry.specs():
            if spec.configured is None:
                continue
            for backend in spec.configured(options, functools.partial(self.pool.session, f"{spec.kind}-configured")):
                # Their own table: discovery never sees them (so never marks them vanished) and, as a cloud API
                # bills or rate-limits polling, no monitor is started for them (see _on_service).
                self.cloud[backend.record.id] = backend.record
                self._adapters[backend.record.id] = backend
                self.bus.publish(ServiceDiscovered(backend.record))

    def adapter(self, service_id: str) -> Backend | None:
        """The adapter driving a service (made on first use)."""
        if service_id not in self._adapters:
            rec = self.services.get(service_id)
            made = (registry.create_adapter(rec, functools.partial(self.pool.session, rec.id),
                                             self.settings.backend_options())
                    if rec is not None else None)
            if made is None:
                return None
            self._adapters[service_id] = made
        return self._adapters[service_id]

    def health_view(self, service_id: str) -> ServiceHealth | None:
        """What the router needs to know about a service now."""
        m = self.monitors.get(service_id)
        if m is None:
            starting = self.launcher.starting(service_id)
            return ServiceHealth(ServiceState.UNKNOWN, starting=starting) if starting else None
        last = m.last
        free = None
        if last is not None and last.vram:
            free = min(v.free for v in last.vram)
        elif service_id in self.services:
            free = self._nvml_free(service_id)
        return ServiceHealth(m.state, last.latency_ms if last else None, last.queue_depth if last else None, free,
                             m.breaker.state.value, m.breaker.retry_in(), last.message if last and not last.ok else "",
                             starting=self.launcher.starting(service_id) or "")

    def vram_used(self, service_id: str) -> int | None:
        """VRAM in use on the service's GPU(s), from its own report or from NVML."""
        m = self.monitors.get(service_id)
        if m is not None and m.last is not None and m.last.vram:
            return sum(v.used for v in m.last.vram)
        for gpu in self.gpu_samples:
            if any(p.service_id == service_id for p in gpu.processes):
                return int(gpu.used)
        return None

    async def prepare_params(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        """A job's params as the backends will run them (a UI-format workflow file converted, say)."""
        try:
            return await registry.prepare(task, params, self.settings.backend_options(), list(self.services.values()),
                                          self.pool.session)
        except SchemaError as err:
            raise InvalidJob(str(err)) from err

    async def _launched_ready(self, entry: LaunchEntry) -> None:
        """A backend Backlot launched answers: known at once, and checked now (no reconnect backoff to sit out)."""
        await self.discovery.run(urls=[entry.url])
        m = self.monitors.get(entry.service_id)
        if m is not None:  # checked now, so it shows up by the time the launcher says it runs
            m.breaker.probe_now()
            if await m.check_now() is None:  # a check was under way: another right after it
                m.check_soon()
            self.inventory.refresh_soon(entry.service_id)
        self.jobs.wake()  # queued jobs that waited for it

    def _routable(self) -> list[ServiceRecord]:
        """What the router picks from: the known services, and backends Backlot is starting that discovery has not
        seen yet (a job for them waits instead of being refused; they are never chosen while starting)."""
        known = self.services
        coming = [ServiceRecord(kind=ServiceKind(e.kind), host=e.address, port=e.port, base_url=e.url, protocol="",
                                found_by=FoundBy.CONFIGURED_URL, capabilities=registry.capabilities(e.kind))
                  for e in self.launcher.starting_entries() if e.service_id not in known]
        return [*known.values(), *coming]

    async def _backend_exit(self, service_id: str) -> str | None:
        return await self.launcher.exit_reason(service_id)

    def _secrets(self) -> list[str]:
        """Values no launched backend's console may show: the LLM keys and the socket API's token."""
        values = [v.get_secret_value() for v in self.settings.llm_keys.values()]
        if self._token is None:  # read once it exists (the API writes it on its first start)
            try:
                self._token = self.settings.paths.token_file.read_text("utf-8").strip() or None
            except OSError:
                pass
        return [*values, self._token] if self._token else values

    async def _check_service(self, service_id: str) -> None:
        """A health check now, so a running job's VRAM peak is seen (the sample reaches the runner as an event)."""
        m = self.monitors.get(service_id)
        if m is not None:
            await m.check_now()

    def _nvml_free(self, service_id: str) -> int | None:
        for gpu in self.gpu_samples:
            if any(p.service_id == service_id for p in gpu.processes):
                return int(gpu.total - gpu.used)
        return None

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop in order — API, jobs, background loops, monitors, GPU, adapters, sessions, store — leaving nothing behind."""
        if self.api is not None:
            await asyncio.to_thread(forget_instance, self.settings.data_path, self.settings.paths.config_dir)
            await self.api.stop()
            self.api = None
        if self._started:
            await self.jobs.stop()
        await self.launcher.close()  # what Backlot launched stops with it (unless an entry keeps running)
        await self.inventory.stop()
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe.clear()
        if self._log_handler is not None:
            self._log_handler.remove()
            self._log_handler = None
        await self.keeper.cancel_all(timeout)
        self.monitors.clear()
        await self.gpu.stop()
        for adapter in self._adapters.values():
            await adapter.close()
        self._adapters.clear()
        for spec in registry.specs():
            if spec.shutdown is not None:  # e.g. litellm keeps HTTP clients per event loop
                await spec.shutdown()
        await self.pool.close()
        if self._started:
            await self.store.close()
        self._started = False

    # ----- internals -----
    def _interval(self) -> float:
        return self.settings.health_interval_visible if self.dashboard_visible else self.settings.health_interval

    def _on_service(self, event: ServiceDiscovered | ServiceUpdated) -> None:
        rec = event.record
        if rec.origin is Origin.CLOUD:
            return
        previous = rec.details.get("previous_id")
        if previous and previous in self.monitors:  # it moved: retire the old id's monitor, adapter and session
            self.keeper.spawn(f"retire {previous}", self._stop_monitor(previous))
        if rec.id not in self.monitors:
            self._start_monitor(rec)
        elif isinstance(event, ServiceUpdated):
            monitor = self.monitors[rec.id]
            monitor.record = rec  # checked as it is now: a Wan2GP web UI restarted with --mcp is checked over MCP
            if "protocol" in event.changes or "usable" in event.changes:
                stale = self._adapters.pop(rec.id, None)  # made for what it was; the next job makes a new one
                if stale is not None:
                    self.keeper.spawn(f"retire adapter {rec.id}", stale.close())
                monitor.check_soon()
            elif "back" in event.changes:
                monitor.check_soon()

    def _start_monitor(self, rec: ServiceRecord) -> None:
        sid = rec.id
        backoff = Backoff(self.settings.reconnect_backoff_base, self.settings.reconnect_backoff_max)
        breaker = CircuitBreaker(sid, self.clock, threshold=self.settings.breaker_threshold, backoff=backoff,
                                 on_change=lambda snap: self.bus.publish(BreakerChanged(sid, snap)))
        self.breakers[sid] = breaker
        # Staggered starts spread the first checks over a fraction of the interval.
        stagger = random.uniform(0, min(1.0, self._interval() / 4)) if self.monitors else 0.0
        monitor = HealthMonitor(rec, registry.health_check, self.pool, self.bus, self.metrics, breaker,
                                interval=self._interval(), degraded_latency_ms=self.settings.degraded_latency_ms,
                                degraded_error_rate=self.settings.degraded_error_rate,
                                timeout=self.settings.health_timeout, backoff=backoff, clock=self.clock,
                                start_delay=stagger)
        self.monitors[sid] = monitor
        self.keeper.spawn(f"health {sid}", monitor.run())

    async def _stop_monitor(self, service_id: str) -> None:
        self.monitors.pop(service_id, None)
        self.breakers.pop(service_id, None)
        adapter = self._adapters.pop(service_id, None)
        if adapter is not None:
            await adapter.close()
        await self.keeper.cancel(f"health {service_id}")
        await self.pool.invalidate(service_id)

    async def _discovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.discovery_interval)
            try:
                await self.discover()
            except Exception:
                log.exception("background discovery failed")

    async def _gpu_loop(self) -> None:
        while True:
            try:
                samples = await self.gpu.sample(self.services.values())
            except Exception as err:  # a driver hiccup must not end sampling
                log.warning("GPU sampling failed: %s", err)
                samples = ()
            self.gpu_samples = samples
            for s in samples:
                self.metrics.record(f"gpu_used:{s.index}", s.at, float(s.used))
                self.bus.publish(MetricsSampled(f"gpu_used:{s.index}", s.at, float(s.used)))
                for p in s.processes:
                    if p.service_id and p.used_bytes is not None:
                        self.metrics.record(f"vram_service:{p.service_id}", s.at, float(p.used_bytes))
            if samples:
                self.bus.publish(GpuSampled(samples))
            await asyncio.sleep(min(self._interval(), 2.0) if self.dashboard_visible else 5.0)
