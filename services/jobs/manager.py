"""JobManager: accept, queue, route, run, cancel and recover jobs; every change is persisted and published."""
from __future__ import annotations

import asyncio
import copy
import logging
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from backlot.services.backends.base import Backend, PreviewImage
from backlot.services.config import Settings
from backlot.services.errors import BacklotError
from backlot.services.text import one_line
from backlot.services.events import EventBus, HealthSampled, JobPreviewed, JobUpdated
from backlot.services.jobs.router import RouteDecision, Router, Wants
from backlot.services.jobs.runner import JobRunner
from backlot.services.jobs.store import JobStore, StoreError
from backlot.services.jobs.validate import InvalidJob, validate_job
from backlot.services.jobs.vram import VramEstimator
from backlot.services.keeper import TaskKeeper
from backlot.services.models import Job, JobFailure, JobState, StatusCode

log = logging.getLogger(__name__)
ENDED_KEPT = 1024  # finished jobs get() serves from memory (they never change again): the API's jobs.get


class JobError(BacklotError):
    """A job request that cannot be accepted; ``code`` is invalid | no_backend | unknown_job | storage."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class JobManager:
    """Owns the queue. Jobs wait in Backlot until a backend can take them, then a runner drives them."""

    def __init__(self, settings: Settings, store: JobStore, router: Router, adapters: Callable[[str], Backend | None],
                 bus: EventBus, estimator: VramEstimator, vram_used: Callable[[str], int | None],
                 clock: Callable[[], float] = time.monotonic,
                 check_service: Callable[[str], Awaitable[Any]] | None = None,
                 prepare: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
                 backend_exit: Callable[[str], Awaitable[str | None]] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.bus = bus
        self.estimator = estimator
        self.active: dict[str, Job] = {}
        self._ended: OrderedDict[str, Job] = OrderedDict()  # recently finished jobs by id and by number
        self._needs: dict[str, Wants] = {}  # per active job: what it needs per backend kind (read off the loop)
        self.runner = JobRunner(self, settings, adapters, vram_used, estimator.learn, clock, check_service, backend_exit)
        self._adapters = adapters
        self._prepare = prepare  # the params as the backends will run them (InvalidJob when they cannot)
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # set and replaced on every change: waiters re-check their job
        self._accepting = asyncio.Lock()
        self.keeper = TaskKeeper()  # the scheduler
        self._unsub: Callable[[], None] | None = None

    # ----- lifecycle -----
    async def start(self, recover: bool = True) -> None:
        """Recover jobs left by the last run (unless another instance owns them), then start scheduling."""
        await self.estimator.load_all()  # what earlier runs learned about VRAM
        if recover:
            await self.recover()
        self._unsub = self.bus.subscribe(self._on_health, HealthSampled)
        self.keeper.spawn("job-scheduler", self._schedule_loop())
        self._wake.set()

    async def stop(self) -> None:
        """Stop scheduling and detach from running jobs (they stay "running" and are re-attached next start)."""
        if self._unsub:
            self._unsub()
        await self.keeper.cancel_all()
        await self.runner.stop()

    # ----- requests -----
    async def submit(self, task: str, prompt: str, params: dict[str, Any] | None = None, inputs: list[str] | None = None,
                     requested_backend: str = "auto", client: str = "") -> Job:
        """Validate, persist (before anything is sent) and queue a job; raises JobError with a clear sentence.

        Submits are taken one at a time, in the order they arrive (asyncio.Lock is FIFO): two jobs a
        client sends back to back get their numbers, and their turn on the backend, in that order.
        """
        async with self._accepting:
            return await self._submit(task, prompt, params, inputs, requested_backend, client)

    async def _submit(self, task: str, prompt: str, params: dict[str, Any] | None, inputs: list[str] | None,
                      requested_backend: str, client: str) -> Job:
        if not isinstance(prompt, str):
            raise JobError("prompt must be text", "invalid")
        try:  # what the job says (parameters, prompt, input files), then the route: nothing is written before all pass
            params = await self._prepare(task, dict(params or {})) if self._prepare is not None else params
            valid = await validate_job(self.settings, task, dict(params or {}), list(inputs or []), prompt)
            values, files = valid.params, valid.inputs
            wants = await asyncio.to_thread(self.router.needs_for, task, values)
            decision = self.router.route(task, values, requested_backend or "auto", advance=False, needs=wants)
            if decision.no_capable_backend:
                raise JobError(decision.explain(), "no_backend")
        except InvalidJob as err:
            raise JobError(str(err), "invalid") from err
        job = Job(id=uuid.uuid4().hex[:12], task=task, prompt=prompt, params=values, requested_backend=requested_backend
                  or "auto", client=client)
        folder = self.output_dir(job)
        try:
            await asyncio.to_thread(_prepare_folder, folder, files)
            job.inputs = [str(folder / "inputs" / f.name) for f in files]
            job.route = decision
            job.status = replace(job.status, message=decision.reason if decision.chosen is None
                                 else "waiting in Backlot's queue")
            await self.store.insert(job)
        except (OSError, StoreError) as err:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            why = err if isinstance(err, StoreError) else f"cannot write job files in {folder.parent}: {err.strerror}"
            raise JobError(str(why), "storage") from err
        self.active[job.id] = job
        self._needs[job.id] = wants
        self.publish(job)
        self._wake.set()
        log.info("job %s (#%d) %s queued: %s", job.id, job.seq, task, decision.explain())
        return job

    async def cancel(self, job_id: str) -> Job:
        """Queued: removed. Running: the backend's interrupt; "cancelling" until it confirms."""
        job = self.active.get(job_id) or await self.store.get(job_id)
        if job is None:
            raise JobError(f"no job {job_id}", "unknown_job")
        job = self.active.get(job.id, job)
        if job.state.terminal:
            return job
        if job.id not in self.runner.running:
            await self.finish(job, JobState.CANCELLED, "cancelled before it started")
            return job
        await self.runner.cancel(job)
        return job

    async def get(self, job_id: str) -> Job | None:
        """A job by id or number."""
        known = self.known(job_id)
        if known is not None:
            return known
        job = await self.store.get(job_id)
        if job is None:
            return None
        if job.id in self.active:
            return self.active[job.id]
        if job.state.terminal:
            self._remember(job)
        return job

    def known(self, job_id: str) -> Job | None:
        """A job held in memory (active, or recently finished and read once), by id or number; None: ask ``get``."""
        job = self.active.get(job_id)
        if job is None and (job := self._ended.get(job_id)) is not None:
            self._ended.move_to_end(job_id)
        return job

    def _remember(self, job: Job) -> None:
        for key in (job.id, str(job.seq)):
            self._ended[key] = job
            self._ended.move_to_end(key)
        while len(self._ended) > 2 * ENDED_KEPT:
            self._ended.popitem(last=False)

    async def list(self, state: str | None = None, task: str | None = None, backend: str | None = None,
                   since: float | None = None, limit: int = 200) -> list[Job]:
        """History, newest first (live objects for active jobs)."""
        rows = await self.store.query(state=state, task=task, backend=backend, since=since, limit=limit)
        return [self.active.get(j.id, j) for j in rows]

    async def route_explain(self, task: str, params: dict[str, Any] | None = None,
                            requested: str = "auto") -> RouteDecision:
        """The router's answer for a job like this, without submitting it (its workflow is read off the loop)."""
        params = params or {}
        wants = await asyncio.to_thread(self.router.needs_for, task, params)
        return self.router.route(task, params, requested, advance=False, needs=wants)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job ends (event driven)."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                job = await self.get(job_id)
                if job is None:
                    raise JobError(f"no job {job_id}", "unknown_job")
                if job.state.terminal:
                    return job
                await changed.wait()

    def output_dir(self, job: Job) -> Path:
        """``<outputs>/<job id>/``."""
        return self.settings.output_path / job.id

    def active_on(self, service_id: str) -> int:
        """Jobs Backlot has in flight on one service."""
        return sum(1 for j in self.active.values() if j.routed_to == service_id and j.id in self.runner.running)

    # ----- shared with the runner -----
    def publish(self, job: Job) -> None:
        """Tell subscribers and waiters that a job changed (subscribers get a snapshot, not the live object)."""
        self.bus.publish(JobUpdated(copy.deepcopy(job)))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def previewed(self, job: Job, preview: PreviewImage) -> None:
        """Publish a running job's new preview image (kept off the store: only the path rides on the status)."""
        self.bus.publish(JobPreviewed(job.id, str(preview.path), preview.mime, preview.seq, preview.width,
                                      preview.height))

    async def save(self, job: Job) -> None:
        """Persist and publish."""
        await self.store.update(job)
        self.publish(job)

    async def finish(self, job: Job, state: JobState, message: str, error: JobFailure | None = None) -> None:
        """Move a job to a terminal state: stored first, then visible (live object, waiters, subscribers)."""
        final = copy.deepcopy(job)
        final.state = state
        final.finished_at = time.time()
        final.status = replace(final.status, code=StatusCode(state.value), message=message)
        if state is JobState.SUCCEEDED:
            final.status = replace(final.status, fraction=1.0)
        final.error = error
        # Shielded: a stop arriving now must not leave the row "running" after the job ended.
        await asyncio.shield(self.store.update(final))
        job.__dict__.update(final.__dict__)
        self.publish(job)
        self.active.pop(job.id, None)
        self._needs.pop(job.id, None)
        self._wake.set()
        log.info("job %s %s: %s", job.id, state.value, one_line(message))

    async def backend_exited(self, service_id: str, sentence: str) -> int:
        """The process Backlot launched for ``service_id`` exited: each job running there fails with ``sentence``
        (queued ones stay queued and wait for it to come back). How many failed."""
        failed = 0
        for job in [j for j in self.active.values() if j.routed_to == service_id and j.state is JobState.RUNNING]:
            if not self.runner.claim_exit(job.id):
                continue  # its own task saw the connection drop and is saying so already
            task = self.runner.running.get(job.id)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await self.runner.backend_exited(job, sentence)
            failed += 1
        return failed

    def wake(self) -> None:
        """Ask the scheduler to look at the queue again."""
        self._wake.set()

    # ----- recovery -----
    async def recover(self) -> None:
        """Jobs left queued are queued again; running ones are re-attached where the backend knows them."""
        for job in await self.store.query(state=JobState.QUEUED.value, limit=10000):
            self.active[job.id] = job
        for job in await self.store.query(state=JobState.RUNNING.value, limit=10000):
            self.active[job.id] = job
            if job.cancel_requested:
                await self.finish(job, JobState.CANCELLED, "cancelled (Backlot stopped before the backend confirmed)")
            elif not job.remote_ref:
                job.state, job.routed_to = JobState.QUEUED, None
                job.attempts = job.attempts[:-1]  # it never reached the backend: that attempt did not happen
                job.status = replace(job.status, code=StatusCode.QUEUED, message="queued again after Backlot restarted")
                await self.save(job)
            elif job.routed_to and self._adapters(job.routed_to) is not None:
                log.info("re-attaching job %s to %s (%s)", job.id, job.routed_to, job.remote_ref)
                self.runner.start(job, RouteDecision(job.task, job.routed_to, "re-attached after restart"), resume=True)
            else:
                await self.runner.interrupted(job, f"Backlot stopped while it ran on {job.routed_to}, which is not "
                                                   "reachable now")

    # ----- scheduling -----
    def _on_health(self, event: HealthSampled) -> None:
        self.runner.sample_vram(event.sample.service_id)
        if any(j.state is JobState.QUEUED for j in self.active.values()):
            self._wake.set()  # a backend came back or VRAM freed: queued jobs may fit now

    async def _schedule_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._schedule()
            except Exception:  # the scheduler must keep going whatever one job does
                log.exception("job scheduling failed")

    async def _schedule(self) -> None:
        queued = sorted((j for j in self.active.values() if j.state is JobState.QUEUED and j.id not in self.runner.running),
                        key=lambda j: j.seq)
        for job in queued:
            tried = [a.backend for a in job.attempts]
            shown = job.route.chosen if job.route is not None and not tried else None
            wants = self._needs.get(job.id)
            if wants is None:  # a job recovered after a restart: what it needs is read once, off the loop
                wants = self._needs[job.id] = await asyncio.to_thread(self.router.needs_for, job.task, job.params)
            decision = self.router.route(job.task, job.params, job.requested_backend, exclude=tried, prefer=shown,
                                         needs=wants)
            if decision.chosen is None:
                if tried and not (decision.waiting_for_vram or decision.waiting_for_start):
                    last = job.attempts[-1].message
                    await self.finish(job, JobState.FAILED, f"failed on {', '.join(tried)} ({last}); "
                                      f"no other backend can take it", JobFailure("no_backend", last, decision.to_dict()))
                    continue
                await self._waiting(job, decision, decision.reason)
                continue
            kind = decision.chosen.split("@", 1)[0]
            if self.active_on(decision.chosen) >= self.settings.job_concurrency.get(kind, 1):
                await self._waiting(job, decision, f"waiting for {decision.chosen} (busy with earlier jobs)")
                continue
            if shown and decision.chosen != shown:  # not where it was said to go: say why, once
                why = dict(decision.skipped).get(shown, "a better candidate came up")
                decision = replace(decision, note=f"re-routed from {shown}: {why}")
                log.info("job %s %s", job.id, decision.note)
            self.runner.start(job, decision)

    async def _waiting(self, job: Job, decision: RouteDecision, message: str) -> None:
        if job.status.message != message:
            job.status = replace(job.status, code=StatusCode.QUEUED, message=message)
            job.route = decision
            await self.save(job)


def _prepare_folder(folder: Path, inputs: list[Path]) -> None:
    """Create the job's folder and copy its inputs in, so the job does not depend on files moving later."""
    (folder / "inputs").mkdir(parents=True, exist_ok=True)
    for f in inputs:
        shutil.copy2(f, folder / "inputs" / f.name)
