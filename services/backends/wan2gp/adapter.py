"""Wan2GP adapter: a settings dict to ``wangp_generate`` over MCP, follow ``wangp_get_job``, fetch gallery downloads."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from backlot.services.backends.base import (
    CancelResult,
    FailureCode,
    JobRequest,
    JobStatus,
    OutputFile,
    SessionProvider,
    StatusCode,
    failed,
    failure_for,
    unique_path,
)
from backlot.services.backends.wan2gp.events import EventTracker
from backlot.services.backends.wan2gp.mcp import McpLink, ToolError
from backlot.services.backends.wan2gp.probe import KIND, TASKS
from backlot.services.backends.wan2gp.settings import InvalidParams, available, build_settings, candidates, describe, suggest
from backlot.services.errors import BacklotError, ErrorClass, ServiceError, classify_status
from backlot.services.http import download, request
from backlot.services.models import ServiceRecord

log = logging.getLogger(__name__)
UNKNOWN_JOB = "Unknown WanGP job_id"
UNKNOWN_MODEL = "Unknown model_type"
PAGE = 10         # wangp_list_models never returns more than 10 records
AVAILABILITY_PAGE = 50  # nor wangp_list_model_availability more than 50
MAX_PAGES = 50    # a bound in case a server ignores offset
REFUSED_BY = {"wangp_generate": FailureCode.VALIDATION, "wangp_create_gallery_upload": FailureCode.VALIDATION}


class Unusable(Exception):
    """This Wan2GP cannot run the job as asked (no such model, no weights): another server might."""


class Wan2gpBackend:
    """Drives one Wan2GP instance through its own MCP server (``wgp.py --mcp --mcp-transport streamable-http``)."""

    kind = KIND

    def __init__(self, record: ServiceRecord, session: SessionProvider, *,
                 default_model: str | Mapping[str, str] | None = None, poll_interval: float = 0.5,
                 call_timeout: float = 15.0, unreachable_grace: float = 60.0, job_timeout: float = 6 * 3600,
                 transfer_timeout: float = 300.0, event_limit: int = 100, model_cache_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.record = record
        self._session = session
        self.default_model = default_model  # a model_type for every task, or one per task
        self.poll_interval = poll_interval
        self.unreachable_grace = unreachable_grace  # how long wangp_get_job may keep failing mid-job
        self.job_timeout = job_timeout
        self.event_limit = event_limit
        self.model_cache_seconds = model_cache_seconds
        self.mcp = McpLink(record.base_url, service=record.id, timeout=call_timeout)
        self.transfer_timeout = aiohttp.ClientTimeout(total=transfer_timeout, sock_connect=min(5.0, call_timeout),
                                                      sock_read=min(60.0, transfer_timeout))
        self._video_models: tuple[float, list[dict[str, Any]]] | None = None
        self._clock, self._sleep = clock, sleep  # injected so tests of the waits need not wait

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this server can run (from discovery, else all Wan2GP tasks)."""
        return self.record.capabilities or tuple(TASKS)

    # ----- protocol -----
    async def probe(self) -> dict[str, Any]:
        """The models this Wan2GP offers, for the job console."""
        records = await self._list_models()
        return {"models": [{"model_type": str(r["model_type"]), "name": str(r.get("name") or r["model_type"]),
                            "main_output": _first_output(r)} for r in records]}

    async def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Start the generation and follow it to the end."""
        try:
            settings = build_settings(job.task, job.prompt, job.params)
            if job.task == "image_to_video":
                if not job.inputs:
                    raise InvalidParams("image_to_video needs an input image (--input FILE)")
                if not await asyncio.to_thread(job.inputs[0].is_file):
                    raise InvalidParams(f"input image {job.inputs[0]} does not exist")
        except InvalidParams as err:
            yield failed(str(err), FailureCode.VALIDATION)
            return
        missing_weights = False
        try:
            if "model_type" not in settings:
                settings["model_type"] = self._default_for(job.task) or await self._choose(job.task)
            if str(settings["model_type"]).strip():  # a blank one is Wan2GP's to refuse, in its own words
                missing_weights = not await self._check_named(str(settings["model_type"]))
            if job.task == "image_to_video":
                settings["image_start"] = await self._upload(job.inputs[0])
                settings.setdefault("image_prompt_type", "S")  # S = animate from a start image
            snap = await self.mcp.call("wangp_generate", {"source": settings, "event_limit": self.event_limit})
            job_id = str(snap["job_id"])
        except Unusable as err:
            yield failed(str(err), FailureCode.CAPABILITY)
            return
        except InvalidParams as err:
            yield failed(str(err), FailureCode.VALIDATION)
            return
        except ToolError as err:
            yield failed(f"Wan2GP refused the job: {err.message}", REFUSED_BY.get(err.tool, FailureCode.BAD_RESPONSE))
            return
        except ServiceError as err:
            yield failed(f"{self.record.id}: could not start the job: {_plain(err)}", failure_for(err))
            return
        except KeyError:
            yield failed(f"{self.record.id} answered wangp_generate without a job_id", FailureCode.BAD_RESPONSE)
            return
        model = str(settings["model_type"])
        log.info("%s: job %s started as Wan2GP job %s (%s)", self.record.id, job.id, job_id, model)
        note = f"; the weights of {model} are not there, so Wan2GP will try to download them" if missing_weights else ""
        yield JobStatus(StatusCode.QUEUED, remote_ref=job_id, message=f"queued on {self.record.id}{note}",
                        detail={"model_type": model, "settings": settings})
        async for status in self._follow(job_id, job, snap):
            if missing_weights and status.code is StatusCode.FAILED and status.failure is FailureCode.RUNTIME:
                status = failed(f"{model} had no weights on {self.record.id} and Wan2GP could not get them: "
                                f"{status.message}", FailureCode.CAPABILITY, **status.detail)
            yield status

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Ask Wan2GP to stop the job; confirmed only when it already reports it cancelled (a queued job)."""
        try:
            snap = await self.mcp.call("wangp_cancel_job", {"job_id": remote_ref, "event_limit": 0})
        except ToolError as err:
            if UNKNOWN_JOB in err.message:
                return CancelResult(False, "Wan2GP no longer knows this job")
            return CancelResult(False, f"Wan2GP refused to cancel: {err.message}")
        except ServiceError as err:
            return CancelResult(False, f"could not reach Wan2GP to cancel: {_plain(err)}")
        result = _dict(snap.get("result"))
        if snap.get("done"):
            if result.get("cancelled"):
                return CancelResult(True, "cancelled in Wan2GP")
            return CancelResult(False, "the job had already ended in Wan2GP")
        return CancelResult(False, "cancel requested; waiting for Wan2GP to stop")

    async def lookup(self, remote_ref: str, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Re-attach after a restart: poll the job to its end (outputs fetched), or one FAILED unknown_remote."""
        async for status in self._follow(remote_ref, job, None):
            yield status

    async def close(self) -> None:
        """Close the MCP transport's HTTP client (aiohttp sessions belong to the pool)."""
        await self.mcp.close()

    # ----- following a job -----
    async def _follow(self, job_id: str, job: JobRequest, snap: dict[str, Any] | None) -> AsyncIterator[JobStatus]:
        """Turn snapshots into statuses until the job is done; ``snap`` None means re-attaching (lookup)."""
        tracker = EventTracker(job_id)
        recovering = snap is None
        contact = not recovering
        deadline = self._clock() + self.job_timeout
        while True:
            if snap is not None:
                events = _list(snap.get("events"))
                if recovering:  # a replay of old events is noise: one status saying where the job stands
                    recovering = False
                    tracker.absorb(events)
                    if not snap.get("done"):
                        yield tracker.summary("re-attached after restart")
                else:
                    for status in tracker.statuses(events):
                        yield status
                if snap.get("done"):
                    async for status in self._finish(job_id, snap, tracker, job):
                        yield status
                    return
            if self._clock() >= deadline:
                yield failed(f"no result after {self.job_timeout:.0f} s", FailureCode.TIMEOUT)
                return
            if contact:
                await self._sleep(self.poll_interval)
            started = self._clock()
            try:
                snap = await self._poll(job_id, self.unreachable_grace if contact else 0.0)
            except ToolError as err:
                if UNKNOWN_JOB in err.message:
                    yield failed(f"{self.record.id} no longer knows this job (Wan2GP was restarted or forgot it)",
                                 FailureCode.UNKNOWN_REMOTE)
                else:
                    yield failed(f"Wan2GP could not report the job: {err.message}", FailureCode.BAD_RESPONSE)
                return
            except ServiceError as err:
                if not contact:
                    yield failed(f"{self.record.id}: cannot check the job: {_plain(err)}", failure_for(err))
                else:
                    yield failed(f"lost contact with {self.record.id} for {self._clock() - started:.0f} s: "
                                 f"{_plain(err)}", failure_for(err))
                return
            contact = True

    async def _poll(self, job_id: str, grace: float) -> dict[str, Any]:
        """``wangp_get_job``, retried while the server is unreachable for at most ``grace`` seconds."""
        started = self._clock()

        def out_of_grace(state: RetryCallState) -> bool:
            return self._clock() - started >= grace

        def waiting(state: RetryCallState) -> None:
            if state.attempt_number == 1:
                err = state.outcome.exception() if state.outcome else None
                log.warning("%s: cannot poll job %s (%s); retrying for %.0f s", self.record.id, job_id,
                            _plain(err) if err else "?", grace)

        retrying = AsyncRetrying(stop=out_of_grace, retry=retry_if_exception_type(ServiceError),
                                 wait=wait_exponential(multiplier=max(self.poll_interval, 0.05), max=5.0),
                                 sleep=self._sleep, before_sleep=waiting, reraise=True)
        async for attempt in retrying:
            with attempt:
                snap = await self.mcp.call("wangp_get_job", {"job_id": job_id, "event_limit": self.event_limit})
            if attempt.retry_state.outcome is not None and attempt.retry_state.outcome.failed:
                continue  # tenacity waits, then tries again (or re-raises once out of grace)
            if attempt.retry_state.attempt_number > 1:
                log.info("%s: reachable again; following job %s", self.record.id, job_id)
            return snap
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _finish(self, job_id: str, snap: dict[str, Any], tracker: EventTracker,
                      job: JobRequest) -> AsyncIterator[JobStatus]:
        result = _dict(snap.get("result"))
        if result.get("cancelled"):
            yield JobStatus(StatusCode.CANCELLED, message="cancelled in Wan2GP", remote_ref=job_id)
            return
        if not result.get("success"):
            errors = [e for e in (_list(result.get("errors")) or tracker.errors) if isinstance(e, dict)]
            messages = [str(e.get("message") or "") for e in errors if e.get("message")]
            validation = any(e.get("stage") == "validation" for e in errors)
            yield failed("; ".join(dict.fromkeys(messages)) or "Wan2GP reported the job as failed without a reason",
                         FailureCode.VALIDATION if validation else FailureCode.RUNTIME, wan2gp=errors)
            return
        items = [i for i in _list(result.get("gallery_items")) if isinstance(i, dict) and i.get("gallery_id")]
        if not items:
            yield failed("Wan2GP finished but reported no output files", FailureCode.MISSING_OUTPUT)
            return
        try:
            outputs = await self._fetch(items, job)
        except BacklotError as err:  # ServiceError, ToolError, or a disk that refuses the file
            yield failed(f"the job finished but its files could not be fetched: {_plain(err)}",
                         FailureCode.MISSING_OUTPUT)
            return
        yield JobStatus(StatusCode.SUCCEEDED, fraction=1.0, remote_ref=job_id, outputs=tuple(outputs),
                        message=f"{len(outputs)} file(s) from {self.record.id}")

    # ----- transfers -----
    def _url(self, path: str) -> str:
        """Wan2GP hands out transfer URLs relative to its own base."""
        return self.record.base_url.rstrip("/") + path if path.startswith("/") else path

    async def _fetch(self, items: list[dict[str, Any]], job: JobRequest) -> list[OutputFile]:
        files = []
        for item in items:
            link = await self.mcp.call("wangp_create_gallery_download", {"gallery_id": str(item["gallery_id"])})
            name = str(link.get("filename") or item.get("filename") or Path(str(item.get("path", "output"))).name)
            url = link.get("download_url")
            if not url:
                raise ServiceError(f"Wan2GP gave no download URL for {name}", ErrorClass.BAD_RESPONSE,
                                   service=self.record.id)
            target = await asyncio.to_thread(unique_path, job.output_dir, name)
            await download(self._session(), self._url(str(url)), target,
                           timeout=self.transfer_timeout, service=self.record.id)
            files.append(await asyncio.to_thread(OutputFile.of, target))
        return files

    async def _upload(self, src: Path) -> str:
        """Put the input image into Wan2GP's gallery; returns its gallery id (what ``image_start`` names)."""
        ticket = await self.mcp.call("wangp_create_gallery_upload", {"filename": src.name})
        size = (await asyncio.to_thread(src.stat)).st_size
        limit = ticket.get("max_bytes")
        if isinstance(limit, int) and size > limit:
            raise InvalidParams(f"{src.name} is {size} bytes; Wan2GP accepts uploads of at most {limit}")
        data = await asyncio.to_thread(src.read_bytes)
        reply = await request(self._session(), "PUT", self._url(str(ticket["upload_url"])), data=data,
                              timeout=self.transfer_timeout, service=self.record.id, max_bytes=1024 * 1024)
        body = reply.json(self.record.id) if reply.body.strip()[:1] == b"{" else {}
        if reply.status != 200:
            why = body.get("error") if isinstance(body, dict) else None
            raise ServiceError(f"upload of {src.name} answered HTTP {reply.status}" + (f": {why}" if why else ""),
                               classify_status(reply.status), service=self.record.id, status=reply.status)
        gallery_id = body.get("gallery_id") if isinstance(body, dict) else None
        if not gallery_id:  # the upload "registers and selects" the media: find it in the selection
            selected = await self.mcp.call("wangp_get_gallery_selection", {"media_type": "image"})
            names = [i for i in _list(selected.get("result")) if isinstance(i, dict)
                     and i.get("filename") == ticket.get("filename", src.name)]
            gallery_id = names[-1].get("gallery_id") if names else None
        if not gallery_id:
            raise ServiceError(f"Wan2GP did not say where the upload of {src.name} went", ErrorClass.BAD_RESPONSE,
                               service=self.record.id)
        return str(gallery_id)

    # ----- models -----
    def _default_for(self, task: str) -> str | None:
        if isinstance(self.default_model, str):
            return self.default_model or None
        return self.default_model.get(task) if self.default_model else None

    async def _choose(self, task: str) -> str:
        """A model for ``task`` whose weights are on the server (asked now, not cached); Unusable when none is."""
        fits = candidates(await self._video_records(), task)
        if not fits:
            raise Unusable(f"{self.record.id} offers no model for {task}; name one with model_type")
        present = await self._availability()
        for record in fits:
            if present.get(str(record["model_type"]), True):  # not listed: let Wan2GP decide
                return str(record["model_type"])
        suggestion = suggest(fits)
        raise Unusable(f"no Wan2GP model for {task} has its weights on {self.record.id} (checked {len(fits)}); "
                       f"download one in Wan2GP, e.g. {describe(suggestion)}")

    async def _check_named(self, model_type: str) -> bool:
        """Whether a named model's weights are present; Unusable when this Wan2GP has no such model."""
        try:
            info = await self.mcp.call("wangp_get_model_availability", {"model_type": model_type})
        except ToolError as err:
            if UNKNOWN_MODEL in err.message:
                raise Unusable(f"{self.record.id} has no model named {model_type!r}; see its models with "
                               f"wangp_list_models or Wan2GP's model list") from err
            log.info("%s: availability of %s unknown (%s)", self.record.id, model_type, err.message)
            return True
        return available({"availability": info}) is not False

    async def _video_records(self) -> list[dict[str, Any]]:
        """The video models' records (cached: they change only when Wan2GP is updated or given finetunes)."""
        now = self._clock()
        if self._video_models is None or now - self._video_models[0] > self.model_cache_seconds:
            self._video_models = (now, await self._list_models(main_output="video"))
        return self._video_models[1]

    async def _availability(self) -> dict[str, bool]:
        """model_type -> weights present, for every video model, as the server sees its disk now."""
        present: dict[str, bool] = {}
        try:
            for n in range(MAX_PAGES):
                page = (await self.mcp.call("wangp_list_model_availability", {
                    "main_output": "video", "limit": AVAILABILITY_PAGE, "offset": n * AVAILABILITY_PAGE})).get("result")
                rows = [r for r in _list(page) if isinstance(r, dict) and r.get("model_type")]
                fresh = {str(r["model_type"]): bool(r.get("available")) for r in rows
                         if str(r["model_type"]) not in present}
                present.update(fresh)
                if len(rows) < AVAILABILITY_PAGE or not fresh:
                    break
        except ToolError as err:  # an older Wan2GP without the tool: Wan2GP itself will say what is missing
            log.info("%s: cannot list model availability (%s)", self.record.id, err.message)
        return present

    async def _list_models(self, **filters: Any) -> list[dict[str, Any]]:
        """Every model record, page by page, over the one MCP session."""
        records: list[dict[str, Any]] = []
        seen: set[str] = set()
        for n in range(MAX_PAGES):
            page = (await self.mcp.call("wangp_list_models", {**filters, "limit": PAGE, "offset": n * PAGE})).get("result")
            if not isinstance(page, list):
                raise ServiceError("wangp_list_models returned no list", ErrorClass.BAD_RESPONSE, service=self.record.id)
            fresh = [r for r in page if isinstance(r, dict) and r.get("model_type") and str(r["model_type"]) not in seen]
            records += fresh
            seen.update(str(r["model_type"]) for r in fresh)
            if len(page) < PAGE or not fresh:
                break
        return records


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _first_output(record: Mapping[str, Any]) -> str:
    outputs = record.get("main_output")
    if isinstance(outputs, list):
        return str(outputs[0]) if outputs else ""
    return str(outputs or "")


def _plain(err: BaseException) -> str:
    return err.args[0] if isinstance(err, BacklotError) and err.args else str(err) or type(err).__name__
