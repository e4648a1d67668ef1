"""The socket API's methods: wire mapping only. Each turns a request's params into one use case of the application
service, its answer into that view's one wire form, and its errors into wire codes."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import Field, ValidationError

from backlot.services import __version__
from backlot.services.api.dispatch import Hello, NoParams, Params, Session, rpc
from backlot.services.api.protocol import (
    PROTOCOL_VERSION,
    ApiError,
    InternalError,
    InvalidParams,
    NoBackend,
    UnknownJob,
)
from backlot.services.api.topics import EventFanout
from backlot.services.application.errors import CompletionFailed, Invalid, JobError, NotFound, WorkflowError
from backlot.services.application.service import ApplicationService
from backlot.services.config import Settings
from backlot.services.launch.entry import LaunchEntry
from backlot.services.events import OPT_IN_TOPICS, EventBus
from backlot.services.models import Job

MAX_CONTENT = 8 << 20  # base64 content one jobs.outputs call may carry per file
_JOB_ERRORS: dict[str, type[ApiError]] = {"invalid": InvalidParams, "no_backend": NoBackend,
                                          "unknown_job": UnknownJob}


class ControlFacade(Protocol):
    """What the API needs from the composition root: the application service, the bus, the shutdown flag."""

    settings: Settings
    bus: EventBus
    application: ApplicationService
    shutdown_requested: asyncio.Event


@contextmanager
def use_case_errors() -> Iterator[None]:
    """A use case's errors -> wire codes: JobError by its code (invalid -32602, no_backend -32002, unknown_job
    -32003, else -32603), NotFound -32003, Invalid -32602."""
    try:
        yield
    except JobError as err:
        raise _JOB_ERRORS.get(err.code, InternalError)(str(err), {"reason": err.code}) from err
    except NotFound as err:
        raise UnknownJob(str(err)) from err
    except Invalid as err:
        raise InvalidParams(str(err)) from err


JobRef = Annotated[str | int, Field(description="job id or number")]


class JobParams(Params):
    """A method naming one job."""

    job: JobRef


class RetryParams(JobParams):
    """``jobs.retry``: ``params`` replace some of the old job's (``{"seed": -1}``: a new seed)."""

    params: dict[str, Any] = Field(default_factory=dict)


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


class ImportParams(Params):
    """``workflows.import``."""

    path: str
    name: str | None = None
    task: str | None = None
    force: bool = False
    server: str | None = None


class ServiceUrlParams(Params):
    """``services.add``."""

    url: str


class ServiceIdParams(Params):
    """``services.forget``."""

    service: str


class TopicsParams(Params):
    """``events.subscribe`` / ``events.unsubscribe`` (none: all of the session's topics)."""

    topics: list[str] | None = None


class SendParams(Params):
    """``blender.send``: one of a job's outputs (none: its first image, video or audio)."""

    job: JobRef
    path: str | None = None


class CompleteParams(Params):
    """``llm.complete``."""

    prompt: str
    model: str | None = None
    timeout: float = Field(120.0, gt=0, le=600)


class LaunchNames(Params):
    """``launch.start`` / ``launch.stop``: entry names (``launch.list`` gives them)."""

    names: list[str] = Field(min_length=1)


class LaunchRestart(LaunchNames):
    """``launch.restart``; ``mcp``: a Wan2GP entry showing only its web UI comes back with its MCP server."""

    mcp: bool = False


class LaunchConsole(Params):
    """``launch.console``: lines numbered above ``since`` (0: all kept), at most the last ``limit``."""

    name: str
    since: int = Field(0, ge=0)
    limit: int = Field(500, ge=1, le=100000)


class LaunchPreset(Params):
    """``launch.preset``: the entry "Add from a folder" would make for a checkout (not saved)."""

    folder: str
    kind: str | None = None


class LaunchAdd(Params):
    """``launch.add``: an entry (its settings form, as ``launch.preset`` gives it) known from now on, until Backlot
    stops (a front saves it in config.toml); ``start``: start it now."""

    name: str
    entry: dict[str, Any]
    start: bool = False


class Handlers:
    """Every method of the API, bound to one control center's application service; plain methods answer at once."""

    def __init__(self, center: ControlFacade) -> None:
        self.center = center
        self.app = center.application
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
        return {"services": [s.to_dict() for s in self.app.services()]}

    @rpc("services.discover", DiscoverParams)
    async def services_discover(self, session: Session, p: DiscoverParams) -> dict[str, Any]:
        """One discovery round now."""
        return (await self.app.discover(hosts=p.hosts, urls=p.urls, budget=p.budget)).to_dict()

    @rpc("services.add", ServiceUrlParams)
    async def services_add(self, session: Session, p: ServiceUrlParams) -> dict[str, Any]:
        """Watch a service URL from now on (until Backlot stops) and probe it now."""
        with use_case_errors():
            return (await self.app.add_service(p.url)).to_dict()

    @rpc("services.forget", ServiceIdParams)
    async def services_forget(self, session: Session, p: ServiceIdParams) -> dict[str, Any]:
        """Stop watching a service and drop it (a URL added for it is no longer probed)."""
        return {"forgotten": await self.app.forget_service(p.service)}

    @rpc("health.snapshot")
    def health_snapshot(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Each monitored service's state and last check, and the local GPUs."""
        return self.app.health().to_dict()

    # ----- tasks and routing -----
    @rpc("tasks.list")
    def tasks_list(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Every task's schema (params, inputs) and the backend kinds that serve it, first choice first."""
        return self.app.task_schema()

    @rpc("workflows.list")
    async def workflows_list(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Workflow templates a job may name, per backend kind."""
        try:
            return {"workflows": await self.app.list_workflows()}
        except WorkflowError as err:
            raise InternalError(str(err)) from err

    @rpc("workflows.import", ImportParams)
    async def workflows_import(self, session: Session, p: ImportParams) -> dict[str, Any]:
        """Import a workflow file (a path on this computer) into the user's workflows with inferred bindings."""
        try:
            done = await self.app.import_workflow(Path(p.path), name=p.name, task=p.task, force=p.force,
                                                  server=p.server)
        except (WorkflowError, OSError) as err:
            raise InvalidParams(str(err)) from err
        return done.to_dict()

    @rpc("route.explain", ExplainParams)
    async def route_explain(self, session: Session, p: ExplainParams) -> dict[str, Any]:
        """Where a job like this would go now, and why (nothing is submitted)."""
        with use_case_errors():
            return (await self.app.explain_route(p.task, p.params, p.backend)).to_dict()

    # ----- jobs -----
    @rpc("jobs.submit", SubmitParams)
    async def jobs_submit(self, session: Session, p: SubmitParams) -> dict[str, Any]:
        """Accept a job: stored and queued before this answers (id, number, route)."""
        with use_case_errors():
            job = await self.app.submit(p.task, p.prompt, p.params, p.inputs, p.backend,
                                        client=p.client if p.client is not None else session.client)
        return job.to_dict()

    @rpc("jobs.get", JobParams)
    def jobs_get(self, session: Session, p: JobParams) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """One job by id or number (from memory at once when the manager holds it, else from the store)."""
        job = self.app.known_job(p.job)
        return job.to_dict() if job is not None else self._job_dict(p.job)

    async def _job_dict(self, ref: str | int) -> dict[str, Any]:
        with use_case_errors():
            job: Job = await self.app.job(ref)
        return job.to_dict()

    @rpc("jobs.list", ListParams)
    async def jobs_list(self, session: Session, p: ListParams) -> dict[str, Any]:
        """Job history, newest first."""
        with use_case_errors():
            jobs = await self.app.list_jobs(state=p.state, task=p.task, backend=p.backend, limit=p.limit)
        return {"jobs": [j.to_dict() for j in jobs]}

    @rpc("jobs.cancel", JobParams)
    async def jobs_cancel(self, session: Session, p: JobParams) -> dict[str, Any]:
        """Cancel a job (queued: at once; running: "cancelling" until the backend confirms)."""
        with use_case_errors():
            return (await self.app.cancel(p.job)).to_dict()

    @rpc("jobs.retry", RetryParams)
    async def jobs_retry(self, session: Session, p: RetryParams) -> dict[str, Any]:
        """A new job with the same task, prompt, backend and inputs, its parameters with ``params`` laid over them."""
        with use_case_errors():
            return (await self.app.retry(p.job, client=session.client, params=p.params)).to_dict()

    @rpc("jobs.outputs", OutputsParams)
    async def jobs_outputs(self, session: Session, p: OutputsParams) -> dict[str, Any]:
        """A job's output files (path, mime, size), with base64 content up to ``max_bytes`` each when asked."""
        with use_case_errors():
            return (await self.app.outputs(p.job, p.content, p.max_bytes)).to_dict()

    @rpc("jobs.preview", JobParams)
    async def jobs_preview(self, session: Session, p: JobParams) -> dict[str, Any] | None:
        """The latest preview image of a running job, or null."""
        with use_case_errors():
            preview = await self.app.preview(p.job)
        return None if preview is None else preview.to_dict()

    # ----- Blender -----
    @rpc("blender.send", SendParams)
    async def blender_send(self, session: Session, p: SendParams) -> dict[str, Any]:
        """Ask the connected Blender addons to place a job's output at their playhead (``addons`` 0: none is)."""
        with use_case_errors():
            return (await self.app.send_to_blender(p.job, p.path)).to_dict()

    # ----- launched backends -----
    @rpc("launch.list")
    def launch_list(self, session: Session, p: NoParams) -> dict[str, Any]:
        """Every launch entry: name, kind, state, pid, host, port, restarts, last exit, the last console lines."""
        return {"entries": [v.to_dict() for v in self.app.launch_list()]}

    @rpc("launch.start", LaunchNames)
    async def launch_start(self, session: Session, p: LaunchNames) -> dict[str, Any]:
        """Start entries (answers once spawned; ``launch.updated`` says when each is running)."""
        with use_case_errors():
            return {"entries": [v.to_dict() for v in await self.app.launch_start(p.names)]}

    @rpc("launch.stop", LaunchNames)
    async def launch_stop(self, session: Session, p: LaunchNames) -> dict[str, Any]:
        """Stop entries' whole process trees (answers once they ended)."""
        with use_case_errors():
            return {"entries": [v.to_dict() for v in await self.app.launch_stop(p.names)]}

    @rpc("launch.restart", LaunchRestart)
    async def launch_restart(self, session: Session, p: LaunchRestart) -> dict[str, Any]:
        """Stop and start entries again."""
        with use_case_errors():
            return {"entries": [v.to_dict() for v in await self.app.launch_restart(p.names, mcp=p.mcp)]}

    @rpc("launch.console", LaunchConsole)
    def launch_console(self, session: Session, p: LaunchConsole) -> dict[str, Any]:
        """A launched backend's console: ``{"name", "lines": [{"n", "text"}], "next"}`` (pass ``next`` as
        ``since`` to follow)."""
        with use_case_errors():
            lines = self.app.launch_console(p.name, p.since, p.limit)
        return {"name": p.name, "lines": [line.to_dict() for line in lines],
                "next": lines[-1].n if lines else p.since}

    @rpc("launch.add", LaunchAdd)
    async def launch_add(self, session: Session, p: LaunchAdd) -> dict[str, Any]:
        """Make an entry known to the running launcher (and start it): ``{"entries": [view]}``."""
        try:
            entry = LaunchEntry.model_validate(p.entry)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise InvalidParams(f"launch entry {p.name!r}: {where}: {first['msg']}") from err
        with use_case_errors():
            return {"entries": [v.to_dict() for v in await self.app.launch_add({p.name: entry}, start=p.start)]}

    @rpc("launch.preset", LaunchPreset)
    async def launch_preset(self, session: Session, p: LaunchPreset) -> dict[str, Any]:
        """What "Add from a folder" makes of a checkout: ``{"name", "entry", "note"}``."""
        with use_case_errors():
            preset = await self.app.launch_preset(p.folder, p.kind)
        return {"name": preset.name, "entry": preset.entry.model_dump(mode="json"), "note": preset.note}

    # ----- events -----
    @rpc("events.subscribe", TopicsParams)
    def events_subscribe(self, session: Session, p: TopicsParams) -> dict[str, Any]:
        """Receive notifications for these topics (none named: every topic but the opt-in ``blender.place`` and
        ``launch.console``)."""
        names = sorted(set(self.events.known) - OPT_IN_TOPICS) if p.topics is None else p.topics
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
        try:
            with use_case_errors():
                done = await self.app.complete(p.prompt, p.model, p.timeout, client=session.client or "api")
        except CompletionFailed as err:
            raise (NoBackend if err.reason == "no_backend" else InternalError)(str(err), err.data) from err
        return done.to_dict()
