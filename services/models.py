"""Plain data shared by the core, the GUI and the API (no behaviour, no I/O)."""
from __future__ import annotations

import mimetypes
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
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

    def shown_state(self, health: ServiceState | str) -> str:
        """The one state word for this service, in the window and in ``backlot status`` / ``services.list`` alike.

        Not found by the last discovery: unknown; found but Backlot cannot drive it (a web UI without its API):
        degraded, however well it answers; otherwise its health monitor's state.
        """
        if not self.present:
            return ServiceState.UNKNOWN.value
        if not self.usable:
            return ServiceState.DEGRADED.value
        return ServiceState(health).value

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


class StatusCode(str, Enum):
    """Normalized job status codes (the last four are terminal); a job's ``status.code`` uses these words."""

    QUEUED = "queued"
    RUNNING = "running"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"  # the same word as JobState.SUCCEEDED: one vocabulary for statuses and states
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # a job's status only: Backlot lost track of it (adapters never report it)

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed, cancelled and interrupted."""
        return self in (StatusCode.SUCCEEDED, StatusCode.FAILED, StatusCode.CANCELLED, StatusCode.INTERRUPTED)


class FailureCode(str, Enum):
    """Why a job failed; the job manager fails over only on the backend-side ones."""

    VALIDATION = "validation"      # the request was wrong: another backend would refuse it too
    RUNTIME = "runtime"            # the backend ran it and it failed
    UNREACHABLE = "unreachable"    # the backend went away (refused, reset): fail over
    TIMEOUT = "timeout"            # no answer / no progress in time: fail over
    BAD_RESPONSE = "bad_response"  # the backend answered nonsense
    UNKNOWN_REMOTE = "unknown_remote"  # recovery: the backend no longer knows the job
    MISSING_OUTPUT = "missing_output"  # it finished but the files never arrived
    CAPABILITY = "capability"      # this server lacks what the job needs (a model, a node): another may have it
    STORAGE = "storage"            # Backlot could not write the result here (disk full, read-only folder)
    BACKEND_EXITED = "backend_exited"  # the process Backlot launched for the backend exited while the job ran

    @property
    def backend_side(self) -> bool:
        """True when another backend might succeed."""
        return self in (FailureCode.UNREACHABLE, FailureCode.TIMEOUT, FailureCode.BAD_RESPONSE,
                        FailureCode.CAPABILITY)


@dataclass(frozen=True)
class OutputFile:
    """A result file copied into the job's output folder."""

    path: Path
    mime: str
    bytes: int

    @classmethod
    def of(cls, path: Path) -> OutputFile:
        """Describe a file on disk."""
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return cls(path.resolve(), mime, path.stat().st_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (absolute path)."""
        return {"path": str(self.path), "mime": self.mime, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputFile:
        """Read back ``to_dict()``'s form."""
        return cls(Path(str(d["path"])), str(d.get("mime") or ""), int(d.get("bytes") or 0))


@dataclass(frozen=True)
class PreviewImage:
    """A running job's latest preview image, kept in its output folder (``seq`` counts the job's previews)."""

    path: Path
    mime: str
    seq: int
    width: int | None = None
    height: int | None = None

    @classmethod
    def at(cls, path: str) -> PreviewImage:
        """A preview known only by its path (a stored job's status keeps no more)."""
        return cls(Path(path), mimetypes.guess_type(path)[0] or "image/png", 0)


@dataclass(frozen=True)
class JobStatus:
    """One normalized status update: ``{code, fraction, step, total, unit, message, queue_rank, eta}``."""

    code: StatusCode
    fraction: float | None = None
    step: int | None = None
    total: int | None = None
    unit: str = ""
    message: str = ""
    queue_rank: int | None = None
    eta: float | None = None
    remote_ref: str | None = None
    outputs: tuple[OutputFile, ...] = ()
    failure: FailureCode | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    preview: PreviewImage | None = None  # set on a status that only brings a new preview image

    def to_dict(self) -> dict[str, Any]:
        """The status shape of DESIGN.md, JSON-ready."""
        return {"code": self.code.value, "fraction": self.fraction, "step": self.step, "total": self.total,
                "unit": self.unit, "message": self.message, "queue_rank": self.queue_rank, "eta": self.eta}

    def shown(self) -> dict[str, Any]:
        """A job's status as stored and sent: ``to_dict()`` plus the path of its latest preview image, if any."""
        out = self.to_dict()
        if self.preview is not None:
            out["preview"] = str(self.preview.path)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobStatus:
        """A job's status read back from ``shown()``'s form (a preview keeps only its path)."""
        preview = d.get("preview")
        return cls(StatusCode(d.get("code") or "queued"), d.get("fraction"), d.get("step"), d.get("total"),
                   d.get("unit") or "", d.get("message") or "", d.get("queue_rank"), d.get("eta"),
                   preview=PreviewImage.at(preview) if isinstance(preview, str) else None)



@dataclass(frozen=True)
class RouteDecision:
    """The choice and the reasons: ``chosen`` is None when nothing can take the job now."""

    task: str
    chosen: str | None
    reason: str
    skipped: tuple[tuple[str, str], ...] = ()
    waiting_for_vram: bool = False
    fallback: bool = False
    no_capable_backend: bool = False
    note: str = ""  # e.g. "re-routed from X: down", shown with the job's status
    waiting_for_start: bool = False  # a backend Backlot is (re)starting can take it: the job waits for it

    def explain(self) -> str:
        """One line: "X: why; skipped Y: why, Z: why"."""
        parts = [f"{self.chosen}: {self.reason}" if self.chosen else self.reason]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{sid}: {why}" for sid, why in self.skipped))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the job's ``route``)."""
        return {"task": self.task, "chosen": self.chosen, "reason": self.reason, "explanation": self.explain(),
                "skipped": [{"service": s, "why": w} for s, w in self.skipped], "fallback": self.fallback,
                "waiting_for_vram": self.waiting_for_vram, "waiting_for_start": self.waiting_for_start,
                "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RouteDecision:
        """Read back ``to_dict()``'s form (a job's stored route)."""
        return cls(str(d.get("task") or ""), d.get("chosen"), str(d.get("reason") or ""),
                   tuple((str(s.get("service")), str(s.get("why"))) for s in d.get("skipped") or ()),
                   bool(d.get("waiting_for_vram")), bool(d.get("fallback")), note=str(d.get("note") or ""),
                   waiting_for_start=bool(d.get("waiting_for_start")))



@dataclass(frozen=True)
class Attempt:
    """One try of a job on one backend; ``outcome`` is None while it runs."""

    n: int
    backend: str
    started_at: float
    outcome: str | None = None
    message: str = ""
    finished_at: float | None = None

    def closed(self, outcome: str, message: str, at: float) -> Attempt:
        """This attempt ended (``outcome``: succeeded, cancelled, interrupted, "failed: <why>")."""
        return replace(self, outcome=outcome, message=message, finished_at=at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``finished_at`` once it ended)."""
        out: dict[str, Any] = {"n": self.n, "backend": self.backend, "started_at": self.started_at,
                               "outcome": self.outcome, "message": self.message}
        if self.finished_at is not None:
            out["finished_at"] = self.finished_at
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Attempt:
        """Read back ``to_dict()``'s form."""
        return cls(int(d.get("n") or 0), str(d.get("backend") or ""), float(d.get("started_at") or 0.0),
                   d.get("outcome"), str(d.get("message") or ""), d.get("finished_at"))


@dataclass(frozen=True)
class JobFailure:
    """Why a job ended without a result: ``code`` (a FailureCode word, ``no_backend`` or ``interrupted``)."""

    code: str
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the job's ``error``)."""
        return {"code": self.code, "message": self.message, "detail": self.detail}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobFailure:
        """Read back ``to_dict()``'s form."""
        return cls(str(d.get("code") or ""), str(d.get("message") or ""), dict(d.get("detail") or {}))


@dataclass
class Job:
    """A generation job as stored, routed, shown and reported (see DESIGN.md "Jobs and routing").

    Its parts (status, route, attempts, error, outputs) are frozen models: a change replaces one.
    """

    id: str
    task: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    requested_backend: str = "auto"
    routed_to: str | None = None
    route: RouteDecision | None = None  # None until the router has answered
    state: JobState = JobState.QUEUED
    status: JobStatus = field(default_factory=lambda: JobStatus(StatusCode.QUEUED))
    attempts: tuple[Attempt, ...] = ()
    error: JobFailure | None = None
    outputs: tuple[OutputFile, ...] = ()
    remote_ref: str | None = None
    client: str = ""
    cancel_requested: bool = False
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = field(default_factory=time.time)
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the CLI, the API and the store: the one place the wire form is written."""
        return {"id": self.id, "seq": self.seq, "task": self.task, "prompt": self.prompt, "params": self.params,
                "inputs": self.inputs, "requested_backend": self.requested_backend, "routed_to": self.routed_to,
                "route": self.route.to_dict() if self.route is not None else {}, "state": self.state.value,
                "status": self.status.shown(), "attempts": len(self.attempts),
                "attempt_log": [a.to_dict() for a in self.attempts],
                "error": self.error.to_dict() if self.error is not None else None,
                "outputs": [o.to_dict() for o in self.outputs], "remote_ref": self.remote_ref, "client": self.client,
                "cancel_requested": self.cancel_requested, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at, "updated_at": self.updated_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        """Read back ``to_dict()``'s form (the store's rows and the API's answers)."""
        route, error = d.get("route"), d.get("error")
        return cls(id=str(d["id"]), task=str(d["task"]), prompt=str(d.get("prompt") or ""),
                   params=dict(d.get("params") or {}), inputs=list(d.get("inputs") or []),
                   requested_backend=str(d.get("requested_backend") or "auto"), routed_to=d.get("routed_to"),
                   route=RouteDecision.from_dict(route) if route else None,
                   state=JobState(d.get("state") or "queued"), status=JobStatus.from_dict(d.get("status") or {}),
                   attempts=tuple(Attempt.from_dict(a) for a in d.get("attempt_log") or ()),
                   error=JobFailure.from_dict(error) if error else None,
                   outputs=tuple(OutputFile.from_dict(o) for o in d.get("outputs") or ()),
                   remote_ref=d.get("remote_ref"), client=str(d.get("client") or ""),
                   cancel_requested=bool(d.get("cancel_requested")), created_at=float(d.get("created_at") or 0.0),
                   started_at=d.get("started_at"), finished_at=d.get("finished_at"),
                   updated_at=float(d.get("updated_at") or 0.0), seq=int(d.get("seq") or 0))
