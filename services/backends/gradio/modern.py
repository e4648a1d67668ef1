"""Gradio 4+ through gradio_client: its blocking calls run off the event loop, its status becomes JobStatus."""
from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backlot.services.backends.base import CancelResult, FailureCode, JobStatus, StatusCode, unique_path
from backlot.services.backends.gradio.types import CallResult, Endpoint, GradioError, GradioTimeouts, LocalFile

if TYPE_CHECKING:
    from gradio_client import Client
    from gradio_client.client import Job

log = logging.getLogger(__name__)

# gradio_client status codes (strings, so this module imports it lazily) -> normalized codes.
_QUEUED = {"STARTING", "JOINING_QUEUE", "IN_QUEUE"}
_RUNNING = {"SENDING_DATA", "PROCESSING", "ITERATING"}


def translate_client_error(err: BaseException, service: str, doing: str) -> GradioError:
    """A gradio_client / httpx exception as a GradioError with a sentence and a failure code."""
    import httpx
    from gradio_client.exceptions import AppError, AuthenticationError

    if isinstance(err, AppError):
        return GradioError(f"{service}: {doing} failed: {err.message or 'the app raised an error'}",
                           FailureCode.RUNTIME)
    if isinstance(err, AuthenticationError):
        return GradioError(f"{service}: the app wants a login ({err})", FailureCode.VALIDATION)
    if isinstance(err, (httpx.TimeoutException, TimeoutError)):
        return GradioError(f"{service}: no answer in time while {doing}", FailureCode.TIMEOUT)
    if isinstance(err, httpx.ConnectError):
        return GradioError(f"{service}: connection refused while {doing} (is it running?)",
                           FailureCode.UNREACHABLE)
    if isinstance(err, httpx.TransportError):
        return GradioError(f"{service}: connection dropped while {doing}", FailureCode.UNREACHABLE)
    if isinstance(err, httpx.HTTPStatusError):
        code = FailureCode.VALIDATION if err.response.status_code < 500 else FailureCode.UNREACHABLE
        return GradioError(f"{service}: HTTP {err.response.status_code} while {doing}", code)
    if isinstance(err, KeyError):  # an answer without the fields gradio_client expects
        return GradioError(f"{service}: {doing} gave an answer gradio_client cannot read ({err})",
                           FailureCode.BAD_RESPONSE)
    if isinstance(err, (ValueError, TypeError)):  # arguments that do not fit the endpoint
        return GradioError(f"{service}: {doing} failed: {err}", FailureCode.VALIDATION)
    return GradioError(f"{service}: {doing} failed: {type(err).__name__}: {err}", FailureCode.RUNTIME)


def to_status(update: Any, remote_ref: str) -> JobStatus | None:
    """A gradio_client ``StatusUpdate`` as a JobStatus (None for codes that say nothing new)."""
    code = getattr(update.code, "name", str(update.code))
    if code in _QUEUED:
        return JobStatus(StatusCode.QUEUED, queue_rank=update.rank, eta=update.eta, remote_ref=remote_ref,
                         message="waiting in the app's queue" if update.rank is not None else "joining the queue")
    if code in _RUNNING:
        return JobStatus(StatusCode.RUNNING, eta=update.eta, remote_ref=remote_ref)
    if code == "PROGRESS" and update.progress_data:
        unit = update.progress_data[-1]  # the innermost tracker is the one moving
        fraction = unit.progress if unit.progress is not None else (
            unit.index / unit.length if unit.index is not None and unit.length else None)
        return JobStatus(StatusCode.PROGRESS, fraction=fraction, step=unit.index, total=unit.length,
                         unit=unit.unit or "", message=unit.desc or "", eta=update.eta, remote_ref=remote_ref)
    return None


class ModernClient:
    """Calls through gradio_client, one ``Client`` per call; downloads land in a private folder first.

    One Client per call because Gradio's ``/cancel`` cancels every task of a session and endpoint: with a
    shared Client, dropping one queued job would also cut off a running one of the same endpoint.
    """

    def __init__(self, base_url: str, service: str, timeouts: GradioTimeouts) -> None:
        self.base_url = base_url
        self.service = service
        self.timeouts = timeouts
        self._downloads = Path(tempfile.mkdtemp(prefix="backlot-gradio-"))
        self._jobs: dict[str, Job] = {}
        self._cancelled: set[str] = set()
        self._cleanups: set[asyncio.Future[None]] = set()

    def _make(self) -> Client:
        import httpx
        from gradio_client import Client

        # The read timeout also bounds the SSE stream, which Gradio keeps alive with heartbeats.
        timeout = httpx.Timeout(self.timeouts.config * 6, connect=self.timeouts.connect)
        return Client(self.base_url, verbose=False, download_files=str(self._downloads), analytics_enabled=False,
                      httpx_kwargs={"timeout": timeout})

    async def _client(self) -> Client:
        """A new Client, made off the loop (it fetches the config and API info synchronously)."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._make), self.timeouts.config + self.timeouts.connect)
        except Exception as err:
            raise translate_client_error(err, self.service, "connecting with gradio_client") from err

    def _release(self, client: Client, job: Job | None) -> None:
        """Drop an unfinished job, stop the client's heartbeat and pools (blocking: runs on a worker thread)."""
        try:
            if job is not None and not job.done():
                job.cancel()  # the consumer gave up: at least drop it from the app's queue
        except Exception:  # noqa: BLE001 - best effort on the way out
            log.debug("dropping an abandoned gradio_client job failed", exc_info=True)
        client.close()
        for pool in (client.executor, client.helper_executor, client.stream_executor):
            pool.shutdown(wait=False, cancel_futures=True)

    def _release_later(self, client: Client, job: Job | None) -> None:
        # Not awaited: this may run while the generator is being closed or cancelled; close() awaits it.
        future = asyncio.get_running_loop().run_in_executor(None, self._release, client, job)
        self._cleanups.add(future)
        future.add_done_callback(self._cleanups.discard)

    async def call(self, ep: Endpoint, data: list[Any], output_dir: Path,
                   ref: str) -> AsyncIterator[JobStatus | CallResult]:
        """Submit, yield statuses as they change, then the CallResult with files moved into ``output_dir``.

        A job dropped from the queue by ``cancel()`` ends with a CANCELLED status instead of a result.
        """
        client = await self._client()
        job: Job | None = None
        try:
            args = _client_args(data)
            doing = f"running {ep.name}"
            try:
                job = client.submit(*args, api_name="/" + ep.api_name) if ep.api_name else \
                    client.submit(*args, fn_index=ep.fn_index)
            except Exception as err:
                raise translate_client_error(err, self.service, doing) from err
            self._jobs[ref] = job
            done = asyncio.wrap_future(job.future)
            done.add_done_callback(lambda f: f.cancelled() or f.exception())  # read here or in the loop below
            deadline = asyncio.get_running_loop().time() + self.timeouts.call
            last: tuple[Any, ...] | None = None
            while not done.done():
                await asyncio.wait({done}, timeout=self.timeouts.poll)
                status = to_status(job.status(), ref)
                key = None if status is None else (status.code, status.step, status.total, status.queue_rank,
                                                   status.message)
                if status is not None and key != last and not done.done():
                    last = key
                    yield status
                if not done.done() and asyncio.get_running_loop().time() > deadline:
                    raise GradioError(f"{self.service}: {ep.name} gave no result within {self.timeouts.call:g} s",
                                      FailureCode.TIMEOUT)
            if ref in self._cancelled:
                yield JobStatus(StatusCode.CANCELLED, remote_ref=ref, message="dropped from the app's queue")
                return
            # gradio_client cancels, or fails with CancelledError, the calls pending when its event stream
            # breaks (the app went away); that is not our task being cancelled.
            error = None if done.cancelled() else done.exception()
            if done.cancelled() or isinstance(error, asyncio.CancelledError):
                raise GradioError(f"{self.service}: connection dropped while {doing}", FailureCode.UNREACHABLE)
            if error is not None:
                raise translate_client_error(error, self.service, doing) from error
            result = done.result()
        finally:
            self._jobs.pop(ref, None)
            self._cancelled.discard(ref)
            self._release_later(client, job)
        shown = [c for c in ep.outputs if c.type != "state"]  # gradio_client leaves State values out
        values = list(result) if isinstance(result, tuple) or len(shown) > 1 else [result]
        yield CallResult([await self._localise(v, output_dir) for v in values], ref)

    async def _localise(self, value: Any, output_dir: Path) -> Any:
        """Move files gradio_client downloaded into the job's folder; leave other values as they are."""
        if isinstance(value, (list, tuple)):
            return [await self._localise(v, output_dir) for v in value]
        if isinstance(value, dict):
            return {k: await self._localise(v, output_dir) for k, v in value.items()}
        if isinstance(value, str) and value.startswith(str(self._downloads)):
            source = Path(value)
            if source.is_file():
                target = unique_path(output_dir, source.name)
                await asyncio.to_thread(shutil.move, str(source), str(target))
                return target
        return value

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Drop a job still waiting in the app's queue; a running one cannot be stopped."""
        job = self._jobs.get(remote_ref)
        if job is None:
            return CancelResult(False, f"{self.service} has no call {remote_ref!r} in flight (nothing to stop there)",
                            can_stop=False)
        if getattr(job.status().code, "name", "") not in _QUEUED:
            return CancelResult(False, f"{self.service} (Gradio) cannot stop work that has started; "
                                       "it will run to the end there", can_stop=False)
        self._cancelled.add(remote_ref)
        try:
            await asyncio.wait_for(asyncio.to_thread(job.cancel), self.timeouts.config)
        except Exception as err:  # noqa: BLE001 - a failed cancel is reported, not raised
            self._cancelled.discard(remote_ref)
            return CancelResult(False, f"{self.service}: could not drop the queued job ({err})", can_stop=False)
        return CancelResult(True, f"{self.service}: dropped from the queue before it started")

    async def close(self) -> None:
        """Wait for client clean-ups; remove the download folder."""
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=self.timeouts.config)
        await asyncio.to_thread(shutil.rmtree, self._downloads, True)


def _client_args(data: list[Any]) -> list[Any]:
    """Call arguments with local files wrapped for upload (gradio_client is loaded by now: ``_make`` ran)."""
    from gradio_client import handle_file

    return [handle_file(str(v.path)) if isinstance(v, LocalFile) else v for v in data]
