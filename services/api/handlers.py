"""The socket API's methods: each turns a request into a call on the control center, and its errors into wire codes."""
from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import Field

from services import __version__
from services.api.dispatch import Hello, NoParams, Params, Session, rpc
from services.api.protocol import (
    PROTOCOL_VERSION,
    ApiError,
    InternalError,
    InvalidParams,
    NoBackend,
    UnknownJob,
)
from services.api.topics import EventFanout
from services.backends import registry
from services.backends.previews import SUFFIXES as PREVIEW_SUFFIXES
from services.config import Settings
from services.connectivity.discovery import DiscoveryResult
from services.connectivity.health import HealthMonitor
from services.errors import BacklotError
from services.events import EventBus
from services.jobs.manager import JobError, JobManager
from services.jobs.validate import schema_json
from services.models import Job, JobState, ServiceRecord
from services.tasks import TASKS

MAX_CONTENT = 8 << 20  # base64 content one jobs.outputs call may carry per file
_JOB_ERRORS: dict[str, type[ApiError]] = {"invalid": InvalidParams, "no_backend": NoBackend,
                                          "unknown_job": UnknownJob}


class ControlFacade(Protocol):
    """What the API needs from the composition root (ControlCenter satisfies it; the API never imports it)."""

    settings: Settings
    bus: EventBus
    jobs: JobManager
    monitors: dict[str, HealthMonitor]
    gpu_samples: tuple[Any, ...]
    shutdown_requested: asyncio.Event

    @property
    def services(self) -> dict[str, ServiceRecord]:
        """Known services by id."""

    def snapshot(self) -> list[dict[str, Any]]:
        """Services with health and breaker state."""

    async def discover(self, **kwargs: Any) -> DiscoveryResult:
        """One discovery round now."""


@contextmanager
def job_errors() -> Iterator[None]:
    """JobError -> its wire code (invalid -32602, no_backend -32002, unknown_job -32003, else -32603)."""
    try:
        yield
    except JobError as err:
        raise _JOB_ERRORS.get(err.code, InternalError)(str(err), {"reason": err.code}) from err


JobRef = Annotated[str | int, Field(description="job id or number")]


class JobParams(Params):
    """A method naming one job."""

    job: JobRef


class SubmitParams(Params):
    """``jobs.submit``."""

    task: str
    prompt: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)
    backend: str = "auto"
    client: str | None = None


class ExplainParams(Params):
    """``route.explain``."""

    task: str
    params: dict[str, Any] = Field(default_factory=dict)
    backend: str = "auto"


class ListParams(Params):
    """``jobs.list``."""

    state: str | None = None
    task: str | None = None
    backend: str | None = None
    limit: int = Field(50, ge=1, le=1000)


class OutputsParams(Params):
    """``jobs.outputs``."""

    job: JobRef
    content: bool = False
    max_bytes: int = Field(1 << 20, ge=0, le=MAX_CONTENT)


class DiscoverParams(Params):
    """``services.discover``."""

    hosts: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    budget: float | None = Field(None, gt=0, le=60)


class TopicsParams(Params):
    """``events.subscribe`` / ``events.unsubscribe`` (none: all of the session's topics)."""

    topics: list[str] | None = None


class CompleteParams(Params):
    """``llm.complete``."""

    prompt: str
    model: str | None = None
    timeout: float = Field(120.0, gt=0, le=600)


class Handlers:
    """Every method of the API, bound to one control center; plain methods answer without waiting."""

    def __init__(self, center: ControlFacade) -> None:
        self.center = center
        self.events = EventFanout(center.bus)

    def closed(self, session: Session) -> None:
        """A connection ended: drop its subscriptions."""
        self.events.remove(session)

    # ----- session -----
    @rpc("session.hello", Hello)
    def hello(self, session: Session, p: Hello) -> dict[str, Any]:
        """Who the server is (the token was checked by the server before this runs)."""
        return {"server": "backlot", "version": __version__, "protocol": PROTOCOL_VERSION, "session": session.id,
                "topics": sorted(self.events.known)}

    @rpc("session.ping")
    def ping(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Liveness."""
        return {"pong": True}

    @rpc("app.shutdown")
    def shutdown(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Ask the instance to stop (its owner waits on ``shutdown_requested``)."""
        self.center.shutdown_requested.set()
        return {"stopping": True}

    # ----- services -----
    @rpc("services.list")
    def services_list(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Known services with health and breaker state."""
        return {"services": self.center.snapshot()}

    @rpc("services.discover", DiscoverParams)
    async def services_discover(self, session: Session, p: DiscoverParams) -> dict[str, Any]:
        """One discovery round now."""
        result = await self.center.discover(hosts=p.hosts, urls=p.urls, budget=p.budget)
        return {"services": [r.to_dict() for r in result.records], "duration_ms": round(result.duration_ms, 1),
                "candidates": result.candidates, "timed_out": list(result.timed_out)}

    @rpc("health.snapshot")
    def health_snapshot(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Each monitored service's state and last check, and the local GPUs."""
        services = {}
        for sid, m in sorted(self.center.monitors.items()):
            last = m.last
            services[sid] = {"state": m.state.value, "breaker": m.breaker.snapshot().to_dict(),
                             "last": None if last is None else {
                                 "at": last.at, "ok": last.ok, "latency_ms": last.latency_ms,
                                 "error_class": last.error_class, "message": last.message,
                                 "queue_depth": last.queue_depth,
                                 "vram": [{"device": v.device, "total": v.total, "free": v.free, "source": v.source}
                                          for v in last.vram]}}
        gpus = [{"index": g.index, "name": g.name, "total": g.total, "used": g.used, "utilization": g.utilization,
                 "at": g.at} for g in self.center.gpu_samples]
        return {"services": services, "gpus": gpus, "at": time.time()}

    # ----- tasks and routing -----
    @rpc("tasks.list")
    def tasks_list(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Every task's schema (params, inputs) and the backend kinds that serve it, first choice first."""
        return schema_json(self.center.settings)

    @rpc("workflows.list")
    async def workflows_list(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Workflow templates a job may name, per backend kind."""
        try:
            return {"workflows": await asyncio.to_thread(registry.workflows, self.center.settings.backend_options())}
        except BacklotError as err:
            raise InternalError(str(err)) from err

    @rpc("route.explain", ExplainParams)
    async def route_explain(self, session: Session, p: ExplainParams) -> dict[str, Any]:
        """Where a job like this would go now, and why (nothing is submitted)."""
        if p.task not in TASKS:
            raise InvalidParams(f"unknown task {p.task!r}; tasks: {', '.join(TASKS)}")
        decision = await self.center.jobs.route_explain(p.task, p.params, p.backend)
        return {**decision.to_dict(), "no_capable_backend": decision.no_capable_backend}

    # ----- jobs -----
    @rpc("jobs.submit", SubmitParams)
    async def jobs_submit(self, session: Session, p: SubmitParams) -> dict[str, Any]:
        """Accept a job: stored and queued before this answers (id, number, route)."""
        with job_errors():
            job = await self.center.jobs.submit(p.task, p.prompt, p.params, p.inputs, p.backend,
                                                client=p.client if p.client is not None else session.client)
        return job.to_dict()

    @rpc("jobs.get", JobParams)
    def jobs_get(self, session: Session, p: JobParams) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """One job by id or number (from memory at once when the manager holds it, else from the store)."""
        job = self.center.jobs.known(str(p.job))
        return job.to_dict() if job is not None else self._job_dict(p.job)

    async def _job_dict(self, ref: str | int) -> dict[str, Any]:
        return (await self._job(ref)).to_dict()

    @rpc("jobs.list", ListParams)
    async def jobs_list(self, session: Session, p: ListParams) -> dict[str, Any]:
        """Job history, newest first."""
        if p.state is not None and p.state not in {s.value for s in JobState}:
            raise InvalidParams(f"unknown state {p.state!r}; states: {', '.join(s.value for s in JobState)}")
        jobs = await self.center.jobs.list(state=p.state, task=p.task, backend=p.backend, limit=p.limit)
        return {"jobs": [j.to_dict() for j in jobs]}

    @rpc("jobs.cancel", JobParams)
    async def jobs_cancel(self, session: Session, p: JobParams) -> dict[str, Any]:
        """Cancel a job (queued: at once; running: "cancelling" until the backend confirms)."""
        job = await self._job(p.job)
        with job_errors():
            return (await self.center.jobs.cancel(job.id)).to_dict()

    @rpc("jobs.retry", JobParams)
    async def jobs_retry(self, session: Session, p: JobParams) -> dict[str, Any]:
        """A new job with the same task, prompt, parameters, backend and inputs (the copies in the old job's folder)."""
        old = await self._job(p.job)
        with job_errors():
            job = await self.center.jobs.submit(old.task, old.prompt, old.params, old.inputs, old.requested_backend,
                                                client=session.client or old.client)
        return job.to_dict()

    @rpc("jobs.outputs", OutputsParams)
    async def jobs_outputs(self, session: Session, p: OutputsParams) -> dict[str, Any]:
        """A job's output files (path, mime, size), with base64 content up to ``max_bytes`` each when asked."""
        job = await self._job(p.job)
        outputs = [o.to_dict() for o in job.outputs]
        if p.content:
            await asyncio.to_thread(_attach_content, outputs, p.max_bytes)
        return {"job": job.id, "state": job.state.value, "outputs": outputs}

    @rpc("jobs.preview", JobParams)
    async def jobs_preview(self, session: Session, p: JobParams) -> dict[str, Any] | None:
        """The latest preview image of a running job, or null."""
        job = await self._job(p.job)
        if job.state is not JobState.RUNNING:
            return None
        return await asyncio.to_thread(_preview, job, self.center.jobs.output_dir(job))

    async def _job(self, ref: str | int) -> Job:
        job = await self.center.jobs.get(str(ref))
        if job is None:
            raise UnknownJob(f"no job {ref}")
        return job

    # ----- events -----
    @rpc("events.subscribe", TopicsParams)
    def events_subscribe(self, session: Session, p: TopicsParams) -> dict[str, Any]:
        """Receive notifications for these topics (none named: every topic)."""
        names = sorted(self.events.known) if p.topics is None else p.topics
        unknown = self.events.unknown(names)
        if unknown:
            raise InvalidParams(f"unknown topic(s) {', '.join(unknown)}; topics: {', '.join(sorted(self.events.known))}")
        self.events.add(session, names)
        return {"topics": sorted(session.topics)}

    @rpc("events.unsubscribe", TopicsParams)
    def events_unsubscribe(self, session: Session, p: TopicsParams) -> dict[str, Any]:
        """Stop notifications for these topics (none named: all)."""
        self.events.remove(session, p.topics)
        return {"topics": sorted(session.topics)}

    # ----- LLM -----
    @rpc("llm.complete", CompleteParams)
    async def llm_complete(self, session: Session, p: CompleteParams) -> dict[str, Any]:
        """Run a ``text`` job and answer with its text (the job stays in the history like any other)."""
        with job_errors():
            job = await self.center.jobs.submit("text", p.prompt, {"model": p.model} if p.model else {}, [],
                                                client=session.client or "api")
            try:
                done = await self.center.jobs.wait(job.id, p.timeout)
            except TimeoutError:
                await self.center.jobs.cancel(job.id)
                raise InternalError(f"no reply within {p.timeout:.0f} s; job #{job.seq} was cancelled",
                                    {"job": job.id}) from None
        if done.state is not JobState.SUCCEEDED:
            reason = done.error.code if done.error is not None else None
            cls = NoBackend if reason == "no_backend" else InternalError
            raise cls(f"the text job #{done.seq} {done.state.value}: {done.status.message}",
                      {"job": done.id, "error": done.to_dict()["error"]})
        text = await asyncio.to_thread(_read_text, done)
        return {"text": text, "job": done.id, "seq": done.seq, "backend": done.routed_to}



def _attach_content(outputs: list[dict[str, Any]], max_bytes: int) -> None:
    for o in outputs:
        path = Path(o["path"])
        try:
            size = path.stat().st_size
            if size > max_bytes:
                o["content"], o["omitted"] = None, f"{size} bytes is over max_bytes ({max_bytes})"
            else:
                o["content"] = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError as err:
            o["content"], o["omitted"] = None, f"cannot read {path}: {err.strerror or err}"


def _preview(job: Job, folder: Path) -> dict[str, Any] | None:
    """The preview file the job's status names, else the newest of ``preview.jpg``/``preview.png`` in its folder."""
    named = job.status.preview
    candidates = [named.path] if named is not None else sorted(
        (folder / f"preview{suffix}" for suffix in PREVIEW_SUFFIXES.values()),
        key=lambda f: f.stat().st_mtime if f.exists() else 0.0)
    mimes = {suffix: mime for mime, suffix in PREVIEW_SUFFIXES.items()}
    for path in reversed(candidates):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        mime = mimes.get(path.suffix.lower(), "application/octet-stream")
        return {"job": job.id, "path": str(path), "mime": mime, "bytes": len(data),
                "content": base64.b64encode(data).decode("ascii")}
    return None


def _read_text(job: Job) -> str:
    for o in job.outputs:
        if o.mime.startswith("text/"):
            return o.path.read_text(encoding="utf-8")
    return ""
