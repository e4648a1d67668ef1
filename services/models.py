"""Plain data shared by the core, the GUI and the API (no behaviour, no I/O)."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ServiceKind(str):
    """A backend kind's name (``comfyui``, ``wan2gp`` …); each package under ``services/backends`` declares its own."""

    __slots__ = ()

    @property
    def value(self) -> str:
        """The plain name (reads like an enum's value)."""
        return str(self)


class ServiceState(str, Enum):
    """Health state machine: unknown -> up | degraded | down."""

    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class FoundBy(str, Enum):
    """How discovery came to probe a service."""

    DEFAULT_PORT = "default port"
    CUSTOM_PORT = "custom port"
    CONFIGURED_URL = "configured URL"
    STANDIN = "demo stand-in"
    CLOUD = "configured cloud model"


class Origin(str, Enum):
    """Where a record came from, which decides its lifecycle (see ``ServiceRecord.origin``)."""

    DISCOVERED = "discovered"  # found by probing; marked vanished (not present) when a round misses it
    CONFIGURED = "configured"  # an explicit URL from settings or --url; probed like the rest, down when silent
    CLOUD = "cloud"            # a configured cloud model: never probed, never health-polled, never vanishes


@dataclass(frozen=True)
class ServiceRecord:
    """One known service; ``id`` is ``kind@host:port``. Frozen: a change is a new record (``dataclasses.replace``)."""

    kind: ServiceKind
    host: str
    port: int
    base_url: str
    protocol: str
    version: str = ""
    title: str = ""
    found_by: FoundBy = FoundBy.DEFAULT_PORT
    usable: bool = True
    hint: str = ""
    capabilities: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    first_seen: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    present: bool = True  # False once a later discovery no longer finds it

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ServiceKind(self.kind))

    def __hash__(self) -> int:  # ``details`` is a dict, so hash by identity of the service
        return hash(self.id)

    @property
    def id(self) -> str:
        """Stable identity: kind, host and port."""
        return f"{self.kind.value}@{self.host}:{self.port}"

    @property
    def origin(self) -> Origin:
        """Discovered, configured URL or cloud model, derived from ``found_by``."""
        if self.found_by is FoundBy.CLOUD:
            return Origin.CLOUD
        return Origin.CONFIGURED if self.found_by is FoundBy.CONFIGURED_URL else Origin.DISCOVERED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the CLI and the API."""
        return {"id": self.id, "kind": self.kind.value, "host": self.host, "port": self.port, "url": self.base_url,
                "protocol": self.protocol, "version": self.version, "title": self.title,
                "found_by": self.found_by.value, "origin": self.origin.value, "usable": self.usable, "hint": self.hint,
                "capabilities": list(self.capabilities), "first_seen": self.first_seen,
                "last_seen": self.last_seen, "present": self.present}


@dataclass(frozen=True)
class VramReading:
    """GPU memory of one device as a backend or NVML reports it (bytes)."""

    device: str
    total: int
    free: int
    source: str  # "comfyui" or "nvml"

    @property
    def used(self) -> int:
        """Bytes in use."""
        return max(0, self.total - self.free)


@dataclass(frozen=True)
class HealthSample:
    """The outcome of one health check."""

    service_id: str
    at: float
    ok: bool
    latency_ms: float | None
    error_class: str | None = None
    message: str = ""
    queue_depth: int | None = None
    vram: tuple[VramReading, ...] = ()


@dataclass(frozen=True)
class BreakerSnapshot:
    """Observable circuit-breaker state."""

    state: str  # closed | open | half_open
    failures: int
    reason: str
    opened_at: float | None
    retry_at: float | None
    failures_by_class: dict[str, int] = field(default_factory=dict)
    retry_in: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"state": self.state, "failures": self.failures, "reason": self.reason, "opened_at": self.opened_at,
                "retry_at": self.retry_at, "retry_in": self.retry_in, "failures_by_class": dict(self.failures_by_class)}


@dataclass(frozen=True)
class GpuProcess:
    """A process holding GPU memory, mapped to a service when its pid listens on the service's port."""

    pid: int
    used_bytes: int | None
    name: str = ""
    service_id: str | None = None


@dataclass(frozen=True)
class GpuSample:
    """One NVML reading of a local GPU."""

    index: int
    name: str
    total: int
    used: int
    utilization: int | None
    processes: tuple[GpuProcess, ...] = ()
    at: float = 0.0


class JobState(str, Enum):
    """Job lifecycle: queued → running → succeeded | failed | cancelled; interrupted after an unclean stop."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        """True once the job will not change again."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)


@dataclass
class Job:
    """A generation job as stored, routed, shown and reported (see DESIGN.md "Jobs and routing")."""

    id: str
    task: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    requested_backend: str = "auto"
    routed_to: str | None = None
    route: dict[str, Any] = field(default_factory=dict)
    state: JobState = JobState.QUEUED
    status: dict[str, Any] = field(default_factory=lambda: {"code": "queued", "fraction": None, "step": None,
                                                            "total": None, "unit": "", "message": "",
                                                            "queue_rank": None, "eta": None})
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    remote_ref: str | None = None
    client: str = ""
    cancel_requested: bool = False
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = field(default_factory=time.time)
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the CLI, the API and the GUI."""
        return {"id": self.id, "seq": self.seq, "task": self.task, "prompt": self.prompt, "params": self.params,
                "inputs": self.inputs, "requested_backend": self.requested_backend, "routed_to": self.routed_to,
                "route": self.route, "state": self.state.value, "status": self.status,
                "attempts": len(self.attempts), "attempt_log": self.attempts, "error": self.error,
                "outputs": self.outputs, "remote_ref": self.remote_ref, "client": self.client,
                "cancel_requested": self.cancel_requested, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at, "updated_at": self.updated_at}
