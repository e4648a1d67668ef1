"""JobRunner: drives one job on one backend — statuses, watchdog, failover, cancel — and reports back through JobHost."""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from backlot.services.backends.base import (
    CHOSEN,
    Backend,
    FailureCode,
    JobRequest,
    JobStatus,
    PreviewImage,
    StatusCode,
    failure_for,
)
from backlot.services.config import Settings
from backlot.services.errors import BacklotError
from backlot.services.jobs.router import RouteDecision
from backlot.services.keeper import TaskKeeper
from backlot.services.models import Attempt, Job, JobFailure, JobState

log = logging.getLogger(__name__)
PERSIST_EVERY = 1.0  # seconds between progress writes (state changes are always written at once)
CANCEL_GRACE = 30.0  # seconds to wait for a backend to confirm a cancel
VRAM_SAMPLE_EVERY = 0.5  # seconds between VRAM readings while a job runs (its peak is learned)


class JobHost(Protocol):
    """What a runner reports back to whoever owns the jobs (the JobManager): nothing more."""

    async def save(self, job: Job) -> None:
        """Persist the job, then publish it."""

    def publish(self, job: Job) -> None:
        """Tell subscribers (progress that is not written yet)."""

    def previewed(self, job: Job, preview: PreviewImage) -> None:
        """Tell subscribers the running job has a new preview image (nothing is written to the store)."""

    async def finish(self, job: Job, state: JobState, message: str, error: JobFailure | None = None) -> None:
        """Persist a terminal state, then publish it."""

    def wake(self) -> None:
        """Look at the queue again (a backend freed up, or a job went back to the queue)."""

    def output_dir(self, job: Job) -> Path:
        """Where the job's files go."""


Learn = Callable[[str, str, dict[str, Any], int | None, float], Awaitable[None]]


class JobRunner:
    """One asyncio task per running job."""

    def __init__(self, host: JobHost, settings: Settings, adapters: Callable[[str], Backend | None],
                 vram_used: Callable[[str], int | None], learn: Learn, clock: Callable[[], float],
                 check_service: Callable[[str], Awaitable[Any]] | None = None,
                 backend_exit: Callable[[str], Awaitable[str | None]] | None = None) -> None:
        self.host = host
        self.settings = settings
        self.adapters = adapters
        self.vram_used = vram_used
        self.learn = learn
        self.clock = clock
        # A health check of a service now: VRAM while jobs run (it reaches sample_vram), or after a job lost it.
        self.check_service = check_service
        # For a job that lost its backend: the sentence when the process Backlot launched for it exited, else None.
        self.backend_exit = backend_exit
        self._exiting: set[str] = set()  # jobs being failed because their backend exited (by the runner or the manager)
        self.keeper = TaskKeeper()  # one task per running job, and its VRAM sampler
        self.running: dict[str, asyncio.Task[None]] = {}  # job id -> its task (what counts against concurrency)
        # job id -> (service, baseline, peak) VRAM use while the job runs
        self._peaks: dict[str, tuple[str, int | None, int | None]] = {}

    def start(self, job: Job, decision: RouteDecision, resume: bool = False) -> None:
        """Run ``job`` on ``decision.chosen`` (``resume``: re-attach to work the backend already has)."""
        job.routed_to = decision.chosen  # counted against the backend's concurrency from this moment
        task = self.keeper.spawn(f"job {job.id}", self._run(job, decision, resume))
        assert task is not None  # called on the loop
        self.running[job.id] = task
        task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.running.get(job_id) is task:
            del self.running[job_id]
        self.host.wake()

    async def stop(self) -> None:
        """Detach from every running job (the database keeps them as running for recovery)."""
        await self.keeper.cancel_all()

    def sample_vram(self, service_id: str) -> None:
        """Track the peak VRAM in use on a service while its jobs run (called on health samples)."""
        used = self.vram_used(service_id)
        if used is None:
            return
        for job_id, (sid, base, peak) in list(self._peaks.items()):
            if sid == service_id:
                self._peaks[job_id] = (sid, base, max(peak or 0, used))

    # ----- running -----
    async def _run(self, job: Job, decision: RouteDecision, resume: bool) -> None:
        sid = decision.chosen
        assert sid is not None
        adapter = self.adapters(sid)
        if adapter is None:
            await self._attempt_failed(job, sid, f"{sid} has no adapter", FailureCode.UNREACHABLE)
            return
        if not resume:
            job.routed_to, job.route, job.remote_ref = sid, decision, None
            job.attempts = (*job.attempts, Attempt(len(job.attempts) + 1, sid, time.time()))
            job.state = JobState.RUNNING
            sent = f"sent to {sid}" + (f" ({decision.note})" if decision.note else "")
            # An earlier attempt's preview goes: this attempt brings its own.
            job.status = replace(job.status, code=StatusCode.QUEUED, message=sent, fraction=None, preview=None)
            await self.host.save(job)
        self._peaks[job.id] = (sid, self.vram_used(sid), None)
        started = self.clock()
        req = JobRequest(job.id, job.task, job.prompt, job.params, [Path(p) for p in job.inputs],
                         self.host.output_dir(job))
        stream = adapter.lookup(job.remote_ref, req) if resume and job.remote_ref else adapter.submit(req)
        try:
            await self._follow(job, sid, stream, started)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the last net: whatever broke, the attempt ends and the record says why
            log.exception("job %s: the runner failed on %s", job.id, sid)
            if not job.state.terminal and job.state is JobState.RUNNING:
                await self._attempt_failed(job, sid, f"Backlot failed while following the job: {_describe(err)}",
                                           FailureCode.RUNTIME)
        finally:
            await self.keeper.cancel(f"vram {job.id}")
            self._peaks.pop(job.id, None)
            await _aclose(stream)

    def _start_sampling(self, job: Job, sid: str) -> None:
        """Read the service's VRAM now and every VRAM_SAMPLE_EVERY seconds while the job runs."""
        if self.check_service is not None:
            self.keeper.spawn(f"vram {job.id}", self._sample_loop(sid), unique=True)

    async def _sample_loop(self, sid: str) -> None:
        assert self.check_service is not None
        while True:
            try:
                await self.check_service(sid)
            except Exception as err:  # a failed reading is a missing sample, never a failed job
                log.debug("VRAM reading of %s failed: %s", sid, err)
            await asyncio.sleep(VRAM_SAMPLE_EVERY)

    async def _follow(self, job: Job, sid: str, stream: AsyncIterator[JobStatus], started: float) -> None:
        last_write = 0.0
        watchdog = self.settings.watchdog_seconds
        while True:
            try:
                async with asyncio.timeout(watchdog):
                    status = await anext(stream)
            except StopAsyncIteration:
                await self._attempt_failed(job, sid, f"{sid} stopped reporting before the job ended",
                                           FailureCode.BAD_RESPONSE)
                return
            except TimeoutError:
                await self._stalled(job, sid, watchdog)
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # an adapter that raises instead of reporting FAILED still ends the attempt
                log.warning("job %s: %s raised %s", job.id, sid, _describe(err), exc_info=True)
                code = failure_for(err) if isinstance(err, BacklotError) else FailureCode.BAD_RESPONSE
                await self._attempt_failed(job, sid, f"{sid}: {_describe(err)}", code)
                return
            if status.remote_ref and status.remote_ref != job.remote_ref:
                job.remote_ref = status.remote_ref
                last_write = 0.0  # the backend's reference must be on disk before anything else happens
            if status.preview is not None:  # a new preview only: an event, no store write, no status change
                job.status = replace(job.status, preview=status.preview)
                self.host.previewed(job, status.preview)
                continue
            if status.code is StatusCode.SUCCEEDED:
                await self._succeeded(job, sid, status, started)
                return
            if status.code is StatusCode.CANCELLED:
                self._close_attempt(job, "cancelled", status.message)
                await self.host.finish(job, JobState.CANCELLED, status.message or "cancelled")
                return
            if status.code is StatusCode.FAILED:
                await self._attempt_failed(job, sid, status.message, status.failure or FailureCode.RUNTIME,
                                           status.detail)
                return
            if status.code in (StatusCode.RUNNING, StatusCode.PROGRESS):
                self._start_sampling(job, sid)
            if job.started_at is None and status.code in (StatusCode.RUNNING, StatusCode.PROGRESS):
                job.started_at = time.time()
                last_write = 0.0
            message = "cancelling" if job.cancel_requested else status.message
            job.status = _shown(status, message, job.status.preview)
            now = self.clock()
            if now - last_write >= PERSIST_EVERY:
                last_write = now
                await self.host.save(job)
            else:
                self.host.publish(job)

    async def _succeeded(self, job: Job, sid: str, status: JobStatus, started: float) -> None:
        job.outputs = status.outputs
        chosen = status.detail.get(CHOSEN)
        if isinstance(chosen, dict) and chosen:  # what the backend picked (a random seed) makes the job repeatable
            job.params = {**job.params, **_plain(chosen)}
        job.status = replace(job.status, preview=None)  # the result replaces it (the adapter removed the file)
        self._close_attempt(job, "succeeded", status.message)
        _, base, peak = self._peaks.get(job.id, (sid, None, None))
        used = max(0, peak - base) if peak is not None and base is not None else None
        try:
            await self.learn(sid, job.task, job.params, used, self.clock() - started)
        except Exception as err:  # learning is a bonus; a failed write must not fail the job
            log.warning("could not record job %s's VRAM/duration: %s", job.id, err)
        await self.host.finish(job, JobState.SUCCEEDED, status.message or "done")

    async def _stalled(self, job: Job, sid: str, watchdog: float) -> None:
        adapter = self.adapters(sid)
        if adapter is not None and job.remote_ref:
            try:
                await asyncio.wait_for(adapter.cancel(job.remote_ref), min(10.0, watchdog))
            except Exception as err:
                log.warning("watchdog could not interrupt job %s on %s: %s", job.id, sid, err)
        await self._attempt_failed(job, sid, f"no progress from {sid} for {watchdog:.0f} s", FailureCode.TIMEOUT)

    def _close_attempt(self, job: Job, outcome: str, message: str) -> None:
        if job.attempts:
            job.attempts = (*job.attempts[:-1], job.attempts[-1].closed(outcome, message, time.time()))

    async def _attempt_failed(self, job: Job, sid: str, message: str, failure: FailureCode,
                              detail: dict[str, Any] | None = None) -> None:
        if failure in (FailureCode.UNREACHABLE, FailureCode.TIMEOUT, FailureCode.RUNTIME, FailureCode.BAD_RESPONSE) \
                and self.backend_exit is not None and not job.cancel_requested:
            exited = await self.backend_exit(sid)
            if exited is not None:  # its process died under it: say so, and leave the retry to the user
                if self.claim_exit(job.id):
                    await self.backend_exited(job, exited)
                return
        self._close_attempt(job, f"failed: {failure.value}", message)
        if failure in (FailureCode.UNREACHABLE, FailureCode.TIMEOUT) and self.check_service is not None:
            try:  # the job just saw the service go: check its health now, not at the next interval
                await self.check_service(sid)
            except Exception as err:  # a check that fails is what the health state will show anyway
                log.debug("health check of %s after a failed job: %s", sid, err)
        if failure.backend_side and not job.cancel_requested and len(job.attempts) < self.settings.max_attempts:
            log.warning("job %s failed on %s (%s); trying another backend", job.id, sid, message)
            job.state, job.routed_to, job.remote_ref = JobState.QUEUED, None, None
            job.status = replace(job.status, code=StatusCode.QUEUED, fraction=None, message=f"retrying: {message}")
            await self.host.save(job)
            self.host.wake()
            return
        if job.cancel_requested:
            await self.host.finish(job, JobState.CANCELLED, f"cancelled ({message})")
            return
        if failure is FailureCode.UNKNOWN_REMOTE:
            await self.interrupted(job, f"Backlot stopped while it ran, and {message}")
            return
        await self.host.finish(job, JobState.FAILED, message, JobFailure(failure.value, message, _plain(detail or {})))

    def claim_exit(self, job_id: str) -> bool:
        """True for the first caller that fails this job for its backend's exit (the job's own task or the manager)."""
        if job_id in self._exiting:
            return False
        self._exiting.add(job_id)
        return True

    async def backend_exited(self, job: Job, sentence: str) -> None:
        """End a job whose backend's process exited under it (``failed``, code ``backend_exited``); call
        ``claim_exit`` first."""
        try:
            if job.state.terminal:
                return
            self._close_attempt(job, f"failed: {FailureCode.BACKEND_EXITED.value}", sentence)
            await self.host.finish(job, JobState.FAILED, sentence,
                                   JobFailure(FailureCode.BACKEND_EXITED.value, sentence))
        finally:
            self._exiting.discard(job.id)

    # ----- cancel -----
    async def cancel(self, job: Job) -> None:
        """Ask the backend to stop; wait for it to confirm, or give up waiting where it cannot stop."""
        job.cancel_requested = True
        job.status = replace(job.status, message="cancelling")
        await self.host.save(job)
        adapter = self.adapters(job.routed_to) if job.routed_to else None
        task = self.running.get(job.id)
        result = None
        if adapter is not None and job.remote_ref:
            result = await adapter.cancel(job.remote_ref)
        if result is not None and (result.confirmed or result.can_stop):
            if task is not None:
                try:  # the status stream reports the cancel; don't wait forever for it
                    await asyncio.wait_for(asyncio.shield(task), CANCEL_GRACE)
                    return
                except TimeoutError:
                    pass
        note = result.message if result is not None else "the backend had not accepted it yet"
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not job.state.terminal:
            self._close_attempt(job, "cancelled", note)
            await self.host.finish(job, JobState.CANCELLED, f"cancelled; {note}")

    # ----- after a restart -----
    async def interrupted(self, job: Job, why: str) -> None:
        """End a job Backlot lost track of while it ran (``interrupted``), closing its attempt."""
        self._close_attempt(job, "interrupted", why)
        await self.host.finish(job, JobState.INTERRUPTED, why, JobFailure("interrupted", why))


async def _aclose(stream: AsyncIterator[JobStatus]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except RuntimeError:
            pass  # already running elsewhere (a cancelled consumer); nothing left to close


def _shown(status: JobStatus, message: str, preview: PreviewImage | None) -> JobStatus:
    """An adapter's status as the job shows it: the progress fields, ``message``, and the latest preview kept."""
    return JobStatus(status.code, status.fraction, status.step, status.total, status.unit, message,
                     status.queue_rank, status.eta, preview=preview)


def _plain(detail: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        json.dumps(detail)
        return detail
    except (TypeError, ValueError):
        return {k: str(v) for k, v in detail.items()}


def _describe(err: BaseException) -> str:
    """An exception as one line: our own errors say it plainly; others name their type."""
    text = " ".join(str(err).split())
    if isinstance(err, BacklotError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
