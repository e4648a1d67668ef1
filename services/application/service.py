"""ApplicationService: every use case of a running core, once. The socket API, the window and (through the API)
the command line call these methods; each returns a typed view or a Job, never a front's own serialisation."""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from backlot.services.application import settings_apply, workflows
from backlot.services.application.errors import CompletionFailed, Invalid, NotFound
from backlot.services.application.views import (
    BlenderSend,
    Completion,
    DiscoveryReport,
    HealthSnapshot,
    ImportedWorkflow,
    JobOutputs,
    KeyCheck,
    KeyPresence,
    Preview,
    RouteExplanation,
    ServiceHealthView,
    ServiceView,
)
from backlot.services.backends import registry
from backlot.services.backends.comfyui.probe import KIND as COMFYUI
from backlot.services.backends.comfyui.workflows import TemplateError
from backlot.services.backends.llm.keys import (
    KNOWN_BASES,
    check_key,
    configured_key,
    environment_key,
    key_status_now,
    provider_of,
)
from backlot.services.backends.previews import SUFFIXES as PREVIEW_SUFFIXES
from backlot.services.config import Settings
from backlot.services.events import BlenderPlace, Event
from backlot.services.connectivity.discovery import DiscoveryResult, url_candidate
from backlot.services.connectivity.health import HealthMonitor
from backlot.services.connectivity.metrics import Metrics
from backlot.services.jobs.manager import JobManager
from backlot.services.jobs.router import ServiceHealth
from backlot.services.jobs.validate import InvalidJob, job_schema, schema_json
from backlot.services.launch import presets
from backlot.services.launch.console import ConsoleLine
from backlot.services.launch.entry import LaunchEntry, check_name
from backlot.services.launch.supervisor import Launcher, LaunchNotFound
from backlot.services.launch.view import LaunchView
from backlot.services.models import GpuSample, Job, JobState, OutputFile, ServiceRecord, ServiceState
from backlot.services.tasks import TASKS, SchemaError, TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreParts:
    """What the use cases read and drive, handed over by the composition root (live views, not copies)."""

    services: Callable[[], Mapping[str, ServiceRecord]]
    monitors: Mapping[str, HealthMonitor]
    metrics: Metrics
    gpus: Callable[[], tuple[GpuSample, ...]]
    health: Callable[[str], ServiceHealth | None]
    session: Callable[[str], aiohttp.ClientSession]
    discover: Callable[..., Awaitable[DiscoveryResult]]
    forget: Callable[[str], Awaitable[bool]]
    reconnect: Callable[[str], bool]
    prepare: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
    retune: Callable[[], None] = lambda: None  # health and discovery timing changed in the settings: apply them now
    publish: Callable[[Event], None] = lambda event: None  # the event bus's publish
    listeners: Callable[[str], tuple[str, ...]] = lambda topic: ()  # client names of API sessions on a topic
    launcher: Launcher | None = None  # starts and watches the backends of the launch entries


class ApplicationService:
    """The core's front door: submit, retry, cancel, explain a route, jobs, outputs, workflows, services, health, keys."""

    def __init__(self, settings: Settings, jobs: JobManager, core: CoreParts) -> None:
        self.settings = settings
        self.jobs = jobs
        self.core = core

    # ----- jobs -----
    async def submit(self, task: str, prompt: str = "", params: dict[str, Any] | None = None,
                     inputs: list[str] | None = None, backend: str = "auto", *, client: str = "") -> Job:
        """Accept a job: checked, stored and queued before this returns (JobError with a sentence when refused)."""
        return await self.jobs.submit(task, prompt, params or {}, inputs or [], backend, client=client)

    async def retry(self, ref: str | int, *, client: str = "", params: Mapping[str, Any] | None = None) -> Job:
        """A new job with the same task, prompt, parameters, backend and inputs (the copies in the old job's folder).

        ``params`` replace some of the old job's parameters: ``{"seed": -1}`` retries with a new seed.
        """
        old = await self.job(ref)
        return await self.submit(old.task, old.prompt, {**old.params, **(params or {})}, old.inputs,
                                 old.requested_backend, client=client or old.client)

    async def cancel(self, ref: str | int) -> Job:
        """Cancel a job (queued: at once; running: "cancelling" until the backend confirms)."""
        job = await self.job(ref)
        return await self.jobs.cancel(job.id)

    def known_job(self, ref: str | int) -> Job | None:
        """A job the manager holds in memory, without waiting (None: ask ``job``)."""
        return self.jobs.known(str(ref))

    async def job(self, ref: str | int) -> Job:
        """One job by id or number; NotFound when there is none."""
        job = await self.jobs.get(str(ref))
        if job is None:
            raise NotFound(f"no job {ref}")
        return job

    async def list_jobs(self, state: str | None = None, task: str | None = None, backend: str | None = None,
                        limit: int = 50) -> list[Job]:
        """Job history, newest first."""
        if state is not None and state not in {s.value for s in JobState}:
            raise Invalid(f"unknown state {state!r}; states: {', '.join(s.value for s in JobState)}")
        return await self.jobs.list(state=state, task=task, backend=backend, limit=limit)

    async def outputs(self, ref: str | int, content: bool = False, max_bytes: int = 1 << 20) -> JobOutputs:
        """A job's output files (path, mime, size), with base64 content up to ``max_bytes`` each when asked."""
        job = await self.job(ref)
        outputs = [o.to_dict() for o in job.outputs]
        if content:
            await asyncio.to_thread(_attach_content, outputs, max_bytes)
        return JobOutputs(job.id, job.state.value, tuple(outputs))

    async def preview(self, ref: str | int) -> Preview | None:
        """The latest preview image of a running job (None when it is not running or has none)."""
        job = await self.job(ref)
        if job.state is not JobState.RUNNING:
            return None
        return await asyncio.to_thread(_preview, job, self.jobs.output_dir(job))

    # ----- Blender -----
    def blender_addons(self) -> tuple[str, ...]:
        """The API clients that place what is sent to Blender (sessions subscribed to ``blender.place``)."""
        return self.core.listeners(BlenderPlace.topic)

    async def send_to_blender(self, ref: str | int, path: str | Path | None = None) -> BlenderSend:
        """Ask each connected Blender addon to place one of a job's outputs at its playhead.

        ``path`` must be one of the job's outputs, inside Backlot's output folder (Invalid otherwise); none: the
        job's first image, video or audio output. With no addon connected nothing is published (``addons`` 0).
        """
        job = await self.job(ref)
        output = await asyncio.to_thread(_sendable, job, path, self.settings.output_path)
        addons = len(self.blender_addons())
        if addons:
            self.core.publish(BlenderPlace(job.id, job.seq, str(output.path), output.mime, output.path.name,
                                           job.prompt))
            log.info("sent %s (job #%d) to %d Blender addon(s)", output.path.name, job.seq, addons)
        return BlenderSend(job.id, job.seq, output.path, output.mime, addons)

    def output_folder(self, job_id: str) -> Path:
        """Where a job's outputs are copied."""
        return self.settings.output_path / job_id

    async def explain_route(self, task: str, params: dict[str, Any] | None = None, backend: str = "auto") -> RouteExplanation:
        """Where a job like this would go now, and why (nothing is submitted)."""
        if task not in TASKS:
            raise Invalid(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        decision = await self.jobs.route_explain(task, params or {}, backend)
        return RouteExplanation(decision.to_dict(), decision.explain(), decision.no_capable_backend)

    async def complete(self, prompt: str, model: str | None = None, timeout: float = 120.0, *,
                       client: str = "api") -> Completion:
        """Run a ``text`` job and return its text (the job stays in the history like any other)."""
        job = await self.submit("text", prompt, {"model": model} if model else {}, [], client=client)
        try:
            done = await self.jobs.wait(job.id, timeout)
        except TimeoutError:
            await self.jobs.cancel(job.id)
            raise CompletionFailed(f"no reply within {timeout:.0f} s; job #{job.seq} was cancelled", "timeout",
                                   {"job": job.id}) from None
        if done.state is not JobState.SUCCEEDED:
            reason = "no_backend" if done.error is not None and done.error.code == "no_backend" else "failed"
            raise CompletionFailed(f"the text job #{done.seq} {done.state.value}: {done.status.message}",
                                   reason, {"job": done.id, "error": done.to_dict()["error"]})
        text = await asyncio.to_thread(_read_text, done)
        return Completion(text, done.id, done.seq, done.routed_to)

    # ----- tasks and workflows -----
    def task_schema(self) -> dict[str, Any]:
        """Every task's schema (params, inputs) and the backend kinds that serve it, first choice first."""
        return schema_json(self.settings)

    async def form_schema(self, task: str, params: dict[str, Any]) -> TaskSpec:
        """A task's schema plus what its workflow's bindings add (a UI-format file converted); SchemaError says why not."""
        try:
            prepared = await self.core.prepare(task, params)
            return await asyncio.to_thread(job_schema, self.settings, task, prepared)
        except InvalidJob as err:
            raise SchemaError(str(err)) from err

    async def list_workflows(self) -> list[dict[str, Any]]:
        """Workflow templates a job may name, per backend kind (files read off the loop)."""
        return await asyncio.to_thread(workflows.list_workflows, self.settings)

    async def import_workflow(self, path: Path, *, name: str | None = None, task: str | None = None,
                              force: bool = False, server: str | None = None) -> ImportedWorkflow:
        """Import a workflow file into the user's folder; a UI-format one is converted with a ComfyUI's node list
        (``server``, else the first usable ComfyUI this core knows, healthy ones first)."""
        info = (workflows.object_info_from(lambda: self.core.session(f"workflow-import@{server}"), server)
                if server else self._object_info)
        return await workflows.import_workflow(self.settings, path, info, name=name, task=task, force=force)

    async def _object_info(self) -> Mapping[str, Any]:
        recs = [r for r in self.core.services().values() if r.kind == COMFYUI and r.usable]
        if not recs:
            raise TemplateError(f"it is a UI-format workflow and {workflows.NO_COMFYUI}")
        rec = min(recs, key=lambda r: (not self._up(r.id), r.id))
        return await workflows.object_info_from(lambda: self.core.session(rec.id), rec.base_url)()

    def _up(self, service_id: str) -> bool:
        health = self.core.health(service_id)
        return health is not None and health.state is ServiceState.UP

    # ----- services and health -----
    def services(self) -> list[ServiceView]:
        """Known services with their health and breaker state, by id."""
        out = []
        for sid, rec in sorted(self.core.services().items()):
            m = self.core.monitors.get(sid)
            last = m.last if m else None
            out.append(ServiceView(rec, rec.shown_state(m.state if m else ServiceState.UNKNOWN),
                                   last.latency_ms if last else None,
                                   last.queue_depth if last else None, m.breaker.snapshot() if m else None,
                                   self.core.metrics.success_rate(sid)))
        return out

    def health(self) -> HealthSnapshot:
        """Each monitored service's state and last check, and the local GPUs."""
        records = self.core.services()
        services = {sid: ServiceHealthView(records[sid].shown_state(m.state) if sid in records else m.state.value,
                                           m.breaker.snapshot(), m.last)
                    for sid, m in sorted(self.core.monitors.items())}
        return HealthSnapshot(services, self.core.gpus(), time.time())

    async def discover(self, hosts: Iterable[str] = (), urls: Iterable[str] = (),
                       budget: float | None = None) -> DiscoveryReport:
        """One discovery round now (monitors follow for what it finds)."""
        return report(await self.core.discover(hosts=list(hosts), urls=list(urls), budget=budget))

    async def add_service(self, url: str) -> DiscoveryReport:
        """Watch a service URL from now on (every discovery round probes it) and probe it now; a malformed URL
        raises Invalid and is not kept."""
        try:
            url_candidate(url)
        except ValueError as err:
            raise Invalid(f"{url!r}: {err}") from err
        if url not in self.settings.urls:
            self.settings.urls = [*self.settings.urls, url]
        return await self.discover(urls=[url])

    async def forget_service(self, service_id: str) -> bool:
        """Stop watching a service and drop it; a URL that was added for it is no longer probed."""
        rec = self.core.services().get(service_id)
        if rec is not None:
            self.settings.urls = [u for u in self.settings.urls if u.rstrip("/") != rec.base_url.rstrip("/")]
        return await self.core.forget(service_id)

    def apply_settings(self, changes: Mapping[str, Any]) -> settings_apply.SettingsApplied:
        """Saved settings into the running core: live ones at once, the rest named as needing a restart.

        New service URLs, removed ones and new hosts or ports are then probed by ``follow_settings``."""
        applied = settings_apply.apply(self.settings, changes)
        if applied.retune:
            self.core.retune()
        if applied.relaunch and self.core.launcher is not None:
            self.core.launcher.sync()  # new entries appear (stopped), removed ones stop, changed ones apply
        return applied

    async def follow_settings(self, applied: settings_apply.SettingsApplied) -> list[DiscoveryReport]:
        """Forget the services of removed URLs, probe each new URL (watched from now on), rediscover for new hosts;
        start the new launch entries that start with Backlot."""
        launcher = self.core.launcher
        new = [n for n in applied.launch_started if launcher is not None and n in launcher.runs]
        if new:
            await self.launch_start(new)
        gone = {_base_url(u) for u in applied.removed_urls}
        for sid, rec in list(self.core.services().items()):
            if rec.base_url.rstrip("/") in gone:
                await self.forget_service(sid)
        reports = [await self.add_service(url) for url in applied.added_urls]
        if applied.rediscover and not reports:
            reports.append(await self.discover())
        return reports

    # ----- launched backends -----
    def _launcher(self) -> Launcher:
        if self.core.launcher is None:
            raise Invalid("this Backlot does not launch backends (another instance of this home runs them)")
        return self.core.launcher

    def launch_list(self) -> list[LaunchView]:
        """Every launch entry with its state, pid, port, restarts and last exit."""
        return self.core.launcher.views() if self.core.launcher is not None else []

    async def launch_start(self, names: Iterable[str]) -> list[LaunchView]:
        """Start entries (NotFound names the unknown one before any starts); each view once spawned."""
        launcher = self._launcher()
        names = self._launch_names(launcher, names)
        return [await launcher.start_entry(n) for n in names]

    async def launch_stop(self, names: Iterable[str]) -> list[LaunchView]:
        """Stop entries' whole process trees; each view once it ended."""
        launcher = self._launcher()
        names = self._launch_names(launcher, names)
        return list(await asyncio.gather(*(launcher.stop_entry(n) for n in names)))

    async def launch_restart(self, names: Iterable[str], *, mcp: bool = False) -> list[LaunchView]:
        """Restart entries; ``mcp``: a Wan2GP entry running its web UI only comes back with its MCP server."""
        launcher = self._launcher()
        names = self._launch_names(launcher, names)
        out = []
        for n in names:
            entry = launcher.runs[n].entry
            if mcp and entry.kind != "wan2gp":
                raise Invalid(f"{n} is a {entry.kind} entry; only Wan2GP has an MCP server to restart with")
            fixed = presets.with_mcp(entry) if mcp else None
            if fixed is not None and n in self.settings.launch:
                self.settings.launch = {**self.settings.launch, n: fixed}  # the front saves it in config.toml
            out.append(await launcher.restart_entry(n, fixed))
        return out

    async def launch_wait(self, names: Iterable[str], states: Iterable[str] = ("running", "failed", "blocked"),
                          timeout: float = 120.0) -> list[LaunchView]:
        """Wait until each entry is in one of ``states`` (by default: started, or given up); TimeoutError."""
        launcher = self._launcher()
        wanted = tuple(states)
        return list(await asyncio.gather(*(launcher.wait_state(n, wanted, timeout)
                                           for n in self._launch_names(launcher, names))))

    def launch_console(self, name: str, since: int = 0, limit: int | None = None) -> list[ConsoleLine]:
        """A launched backend's console lines numbered above ``since`` (secrets blanked out)."""
        try:
            return self._launcher().console(name, since, limit)
        except LaunchNotFound as err:
            raise NotFound(str(err)) from err

    async def launch_add(self, entries: Mapping[str, LaunchEntry], *, start: bool = True) -> list[LaunchView]:
        """Entries added while running (the demo's stand-ins, or one the user just made) and started."""
        launcher = self._launcher()
        ports = {e.port: n for n, e in self.settings.launch.items()}
        for name, entry in entries.items():
            try:
                check_name(name)
            except ValueError as err:
                raise Invalid(str(err)) from err
            if name in self.settings.launch and self.settings.launch[name] != entry:
                raise Invalid(f"a launch entry named {name!r} exists already")
            if ports.get(entry.port, name) != name:
                raise Invalid(f"port {entry.port} is launch entry {ports[entry.port]!r}'s already")
            if entry.kind not in registry.kinds():
                raise Invalid(f"unknown kind {entry.kind!r}; known kinds: {', '.join(registry.kinds())}")
        self.settings.launch = {**self.settings.launch, **entries}
        launcher.sync()
        return await self.launch_start(entries) if start else [launcher.view(n) for n in entries]

    async def launch_preset(self, folder: str | Path, kind: str | None = None) -> presets.Preset:
        """"Add from a folder": the entry for a checkout (not saved: the front shows it, the user saves it)."""
        try:
            return await asyncio.to_thread(presets.from_folder, folder, None, kind, frozenset(self.settings.launch))
        except presets.PresetError as err:
            raise Invalid(str(err)) from err

    @staticmethod
    def _launch_names(launcher: Launcher, names: Iterable[str]) -> list[str]:
        names = list(dict.fromkeys(names))
        if not names:
            raise Invalid("name at least one launch entry" + (
                f" ({', '.join(sorted(launcher.runs))})" if launcher.runs else "; none is configured"))
        for n in names:  # every name checked before any entry is touched
            try:
                launcher.view(n)
            except LaunchNotFound as err:
                raise NotFound(str(err)) from err
        return names

    def reconnect(self, service_id: str) -> bool:
        """Check a service now, skipping its back-off (False: it is not watched)."""
        return self.core.reconnect(service_id)

    # ----- LLM keys -----
    def key_providers(self) -> list[str]:
        """LLM providers with a key row: those of the configured models and keys, and the ones a check is known for."""
        s = self.settings
        names = {provider_of(m) for m in s.llm_models} | set(s.llm_keys) | set(KNOWN_BASES)
        return sorted(names - {"unknown"})

    def key_presence(self, providers: Iterable[str]) -> list[KeyPresence]:
        """Whether a key is there per provider, in Backlot's settings or the environment (no network, no waiting:
        LiteLLM's answer once it is loaded, else the settings and the variables of the providers a check knows)."""
        wanted = list(providers)
        models = [m for m in self.settings.llm_models if provider_of(m) in wanted]
        models += [f"{p}/any" for p in wanted if not any(provider_of(m) == p for m in models)]
        found = key_status_now(models, self.settings.llm_keys)
        out = []
        for p in wanted:
            entry = found.get(p, {"present": False, "missing": []})
            where = ("settings" if configured_key(self.settings.llm_keys, p) is not None
                     else "environment" if entry["present"] else "")
            out.append(KeyPresence(p, where, tuple(entry["missing"])))
        return out

    async def check_key(self, provider: str, typed: str = "") -> KeyCheck:
        """Check a key now with one zero-token request: the key typed, else the configured one, else the environment's."""
        configured = configured_key(self.settings.llm_keys, provider)
        key = typed or (configured.get_secret_value() if configured is not None else "") or environment_key(provider)
        if not key:
            return KeyCheck(provider, "○ no key to check", False)
        if provider not in KNOWN_BASES:
            return KeyCheck(provider, f"◌ no check is known for {provider}", False)
        result = await check_key(provider, key, session=self.core.session(f"llm-key-check@{provider}"))
        return KeyCheck(provider, result, True)

    # ----- backends -----
    @staticmethod
    def backend_titles() -> dict[str, str]:
        """Each backend kind's display name."""
        return backend_titles()


def backend_titles() -> dict[str, str]:
    """Each backend kind's display name, from its spec."""
    return {str(spec.kind): spec.title or str(spec.kind) for spec in registry.specs()}


def backend_kinds() -> list[str]:
    """Every backend kind Backlot knows."""
    return [str(k) for k in registry.kinds()]


def report(result: DiscoveryResult) -> DiscoveryReport:
    """A discovery round as the view the fronts get."""
    return DiscoveryReport(result.records, result.duration_ms, result.candidates, result.timed_out, result.unanswered)


def _base_url(url: str) -> str:
    """The base URL discovery gives a service found at ``url`` (as typed when it cannot be read)."""
    try:
        return url_candidate(url).base_url.rstrip("/")
    except ValueError:
        return url.rstrip("/")


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


def _preview(job: Job, folder: Path) -> Preview | None:
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
        return Preview(job.id, path, mimes.get(path.suffix.lower(), "application/octet-stream"), data)
    return None


def _sendable(job: Job, path: str | Path | None, root: Path) -> OutputFile:
    """The output of ``job`` to send: ``path`` when it is one of its outputs, an existing file under ``root``."""
    media = [o for o in job.outputs if o.mime.split("/", 1)[0] in ("image", "video", "audio")]
    if path is None:
        if not media:
            raise Invalid(f"job #{job.seq} has no image, video or audio output to send to Blender")
        output = media[0]
    else:
        wanted = Path(path).resolve()
        found = next((o for o in job.outputs if o.path.resolve() == wanted), None)
        if found is None:
            raise Invalid(f"{path} is not an output of job #{job.seq}; only a job's own outputs can be sent to Blender")
        output = found
    real = output.path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise Invalid(f"{output.path} is outside Backlot's output folder {root}; only files in it can be sent")
    if not real.is_file():
        raise Invalid(f"{output.path} is no longer on disk")
    return OutputFile(real, output.mime, output.bytes)


def _read_text(job: Job) -> str:
    for o in job.outputs:
        if o.mime.startswith("text/"):
            return o.path.read_text(encoding="utf-8")
    return ""
