"""What the core needs from any backend, and the one normalized status every adapter reports."""
from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp

from services.errors import ErrorClass, ServiceError
from services.models import ServiceKind, ServiceRecord

SessionProvider = Callable[[], aiohttp.ClientSession]


class StatusCode(str, Enum):
    """Normalized job status codes (the last three are terminal); a job's ``status.code`` uses these words."""

    QUEUED = "queued"
    RUNNING = "running"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"  # the same word as JobState.SUCCEEDED: one vocabulary for statuses and states
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled."""
        return self in (StatusCode.SUCCEEDED, StatusCode.FAILED, StatusCode.CANCELLED)


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


@dataclass(frozen=True)
class PreviewImage:
    """A running job's latest preview image, kept in its output folder (``seq`` counts the job's previews)."""

    path: Path
    mime: str
    seq: int
    width: int | None = None
    height: int | None = None


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


@dataclass
class JobRequest:
    """What an adapter needs to run a job."""

    id: str
    task: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)
    output_dir: Path = Path(".")


@dataclass(frozen=True)
class CancelResult:
    """What a cancel achieved.

    ``confirmed``: the backend stopped or dropped the work. Otherwise ``can_stop`` says whether a
    confirmation will follow through the job's status stream (an interrupt was sent) or whether the
    backend cannot stop running work at all (Backlot then stops waiting and ignores the result).
    """

    confirmed: bool
    message: str
    can_stop: bool = True


@runtime_checkable
class Backend(Protocol):
    """One backend service as the core drives it."""

    kind: ServiceKind
    record: ServiceRecord

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this backend can run."""

    async def probe(self) -> dict[str, Any]:
        """A cheap description of what it offers (models, templates, voices)."""

    def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Start the job and yield statuses until a terminal one (with outputs when finished)."""

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Stop or drop the job the backend knows as ``remote_ref``."""

    def lookup(self, remote_ref: str, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Re-attach to a job after a restart: yield its statuses to the end, or one FAILED unknown_remote."""

    async def close(self) -> None:
        """Release what the adapter holds (sessions are the pool's)."""


def failed(message: str, failure: FailureCode, **detail: Any) -> JobStatus:
    """A FAILED status."""
    return JobStatus(StatusCode.FAILED, message=message, failure=failure, detail=detail)


def unique_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name (1).ext`` … when taken; never escapes ``folder``."""
    safe = Path(name).name or "output"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe
    stem, suffix = target.stem, target.suffix
    n = 1
    while target.exists():
        target = folder / f"{stem} ({n}){suffix}"
        n += 1
    return target


def failure_for(err: BaseException) -> FailureCode:
    """The failure code of a transport error (see services.errors)."""
    if isinstance(err, ServiceError):
        if err.error_class in (ErrorClass.REFUSED, ErrorClass.UNREACHABLE, ErrorClass.RESET, ErrorClass.HTTP_ERROR):
            return FailureCode.UNREACHABLE
        if err.error_class is ErrorClass.TIMEOUT:
            return FailureCode.TIMEOUT
        if err.error_class is ErrorClass.CLIENT_ERROR:
            return FailureCode.VALIDATION
        return FailureCode.BAD_RESPONSE
    return FailureCode.RUNTIME
