"""Bridge: the only subscriber to the core's event bus on the Qt side; it turns events into Qt signals."""
from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from backlot.services.events import (
    BreakerChanged,
    DiscoveryFinished,
    Event,
    EventBus,
    GpuSampled,
    HealthChanged,
    HealthSampled,
    JobPreviewed,
    JobUpdated,
    LaunchOutput,
    LaunchUpdated,
    LogRecorded,
    ServiceDiscovered,
    ServiceForgotten,
    ServiceUpdated,
)
from backlot.services.application.views import VramPoint, gpu_vram, sample_vram
from backlot.services.models import Job, JobState


class Bridge(QObject):
    """Widgets connect to these signals only; nothing on the Qt side holds a bus subscription but this."""

    service_changed = Signal(object)  # ServiceRecord
    service_forgotten = Signal(str)
    discovery_finished = Signal(object)  # DiscoveryFinished
    health_sampled = Signal(object, str)  # HealthSample, state
    health_changed = Signal(str, str, str, str)  # service id, old, new, reason
    breaker_changed = Signal(str, object)  # service id, BreakerSnapshot
    vram_sampled = Signal(str, str, float, float)  # series key, label, wall time, bytes used
    latency_sampled = Signal(str, float, float)  # service id, wall time, ms
    job_updated = Signal(object)  # Job snapshot
    job_marker = Signal(float, str, bool)  # wall time, label, True at start / False at end
    job_finished = Signal(object)  # Job that reached a terminal state
    job_previewed = Signal(str, str, int)  # job id, path of its latest preview image, preview number
    log_recorded = Signal(str, str, str, float, object)  # level, logger, message, wall time, service id or None
    launch_updated = Signal(object)  # LaunchView of an entry whose state, pid or restarts changed
    launch_output = Signal(str, object)  # entry name, tuple of ConsoleLine (new lines on its console)

    def __init__(self, bus: EventBus, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.events = 0
        self._job_states: dict[str, JobState] = {}
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(self._on_event)

    def close(self) -> None:
        """Unsubscribe from the bus (the window calls it at shutdown)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: Event) -> None:
        self.events += 1
        if isinstance(event, HealthSampled):
            self._on_health(event)
        elif isinstance(event, JobUpdated):
            self._on_job(event.job)
        elif isinstance(event, JobPreviewed):
            self.job_previewed.emit(event.job_id, event.path, event.seq)
        elif isinstance(event, LogRecorded):
            self.log_recorded.emit(event.level, event.logger, event.message, event.at, event.service)
        elif isinstance(event, (ServiceDiscovered, ServiceUpdated)):
            self.service_changed.emit(event.record)
        elif isinstance(event, ServiceForgotten):
            self.service_forgotten.emit(event.service_id)
        elif isinstance(event, BreakerChanged):
            self.breaker_changed.emit(event.service_id, event.snapshot)
        elif isinstance(event, HealthChanged):
            self.health_changed.emit(event.service_id, event.old.value, event.new.value, event.reason)
        elif isinstance(event, GpuSampled):
            self._emit_vram(gpu_vram(event.samples, time.time()))
        elif isinstance(event, DiscoveryFinished):
            self.discovery_finished.emit(event)
        elif isinstance(event, LaunchUpdated):
            self.launch_updated.emit(event.view)
        elif isinstance(event, LaunchOutput):
            self.launch_output.emit(event.name, event.lines)

    def _on_health(self, event: HealthSampled) -> None:
        sample = event.sample
        self.health_sampled.emit(sample, event.state.value)
        if sample.ok and sample.latency_ms is not None:
            self.latency_sampled.emit(sample.service_id, sample.at, float(sample.latency_ms))
        self._emit_vram(sample_vram(sample))

    def _emit_vram(self, points: list[VramPoint]) -> None:
        for p in points:  # keys and labels are the core's (services.application.views)
            self.vram_sampled.emit(p.key, p.label, p.at, p.used)

    def _on_job(self, job: Job) -> None:
        before = self._job_states.get(job.id)
        self.job_updated.emit(job)
        if job.state is JobState.RUNNING and before is not JobState.RUNNING:
            self.job_marker.emit(job.started_at or time.time(), f"▲ #{job.seq}", True)
        if job.state.terminal:
            self._job_states.pop(job.id, None)
            if before is not None and not before.terminal:
                self.job_marker.emit(job.finished_at or time.time(), f"▼ #{job.seq}", False)
                self.job_finished.emit(job)
            return
        self._job_states[job.id] = job.state
