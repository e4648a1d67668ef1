"""What the core needs from any backend, and the one normalized status every adapter reports."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp

from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.models import FailureCode as FailureCode
from backlot.services.models import JobStatus as JobStatus
from backlot.services.models import OutputFile as OutputFile
from backlot.services.models import PreviewImage as PreviewImage
from backlot.services.models import ServiceKind, ServiceRecord
from backlot.services.models import StatusCode as StatusCode

SessionProvider = Callable[[], aiohttp.ClientSession]


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


# A SUCCEEDED status's ``detail[CHOSEN]``: values the backend picked for parameters the job left unset (a random
# seed); the job records them in its params, so the job can be run again the same way.
CHOSEN = "chosen"


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
