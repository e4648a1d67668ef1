"""ComfyUI adapter: templates → POST /prompt, follow the WebSocket (history polling as fallback), fetch via /view."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

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
from backlot.services.backends.comfyui.families import families, only_one, title
from backlot.services.backends.comfyui.follow import FEATURE_FLAGS, SocketFollower
from backlot.services.backends.comfyui.graph import model_folder
from backlot.services.backends.comfyui.inventory import pinned
from backlot.services.backends.comfyui.messages import execution_error_sentence, lacks_model_or_node, node_error_sentences
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.comfyui.probe import KIND, TASKS
from backlot.services.backends.comfyui.workflows import INPUT_SLOTS, Template, TemplateError, load_all, template_for
from backlot.services.backends.previews import PREVIEW_RATE, PreviewWriter
from backlot.services.errors import BacklotError, ErrorClass, ServiceError
from backlot.services.http import Reply, download, request
from backlot.services.models import ServiceRecord

log = logging.getLogger(__name__)


class ComfyUIBackend:
    """Drives one ComfyUI server (real or stand-in) over HTTP and its WebSocket."""

    kind = KIND

    def __init__(self, record: ServiceRecord, session: SessionProvider, templates: dict[str, Template] | None = None,
                 *, request_timeout: float = 15.0, ws_idle: float = 30.0, job_timeout: float = 6 * 3600,
                 poll_interval: float = 0.5, download_timeout: float = 300.0,
                 options: ComfyUIOptions | None = None,
                 preview_metadata: bool = True, preview_rate: float = PREVIEW_RATE) -> None:
        self.record = record
        self._session = session
        self.options = options or ComfyUIOptions()
        # With no templates given, each job re-reads the workflow folders, so a workflow imported meanwhile is found.
        self.reread = templates is None
        self.templates = templates if templates is not None else load_all(options)
        self.timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=min(5.0, request_timeout))
        self.ws_idle = ws_idle
        self.job_timeout = job_timeout
        self.poll_interval = poll_interval
        self.preview_metadata = preview_metadata  # announce it: previews then name their prompt
        self.preview_rate = preview_rate
        self.download_timeout = aiohttp.ClientTimeout(total=download_timeout, sock_connect=5, sock_read=60)
        self._dropped: dict[str, asyncio.Event] = {}

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this server can run (from discovery, else all ComfyUI tasks)."""
        return self.record.capabilities or tuple(TASKS)

    # ----- the one request choke point -----
    async def _request(self, method: str, path: str, **kw: Any) -> Reply:
        return await request(self._session(), method, self.record.base_url + path, timeout=self.timeout,
                             service=self.record.id, **kw)

    async def _json(self, path: str) -> Any:
        reply = await self._request("GET", path, max_bytes=64 * 1024 * 1024)
        if reply.status != 200:
            raise ServiceError(f"GET {path} answered HTTP {reply.status}", ErrorClass.HTTP_ERROR,
                               service=self.record.id, status=reply.status)
        return reply.json(self.record.id)

    # ----- protocol -----
    async def probe(self) -> dict[str, Any]:
        """Templates, and the models this server offers for each model input they use."""
        models: dict[str, list[str]] = {}
        for cls, name in (("CheckpointLoaderSimple", "ckpt_name"), ("UNETLoader", "unet_name"),
                          ("UpscaleModelLoader", "model_name")):
            info = await self._json(f"/object_info/{cls}")
            choices = info.get(cls, {}).get("input", {}).get("required", {}).get(name, [[]])[0] if info else []
            models[cls] = list(choices) if isinstance(choices, list) else []
        return {"templates": [t.to_dict() for t in self.templates.values()], "models": models}

    def _template_for(self, task: str, params: dict[str, Any]) -> Template:
        """The job's template, user workflows re-read (blocking: run it off the loop)."""
        if self.reread:
            self.templates = load_all(self.options)
        return template_for(self.templates, task, params)

    async def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Queue the job's workflow and follow it to the end."""
        try:
            template = await asyncio.to_thread(self._template_for, job.task, job.params)
            params = pinned(template, job.params, self.options)
            if "color" in template.bindings and "color" not in params:  # model-free templates: colour from the prompt
                params["color"] = int(hashlib.sha256(job.prompt.encode()).hexdigest()[:6], 16)
            if "prompt" in template.bindings:
                params["prompt"] = job.prompt
            workflow, values = template.build(params)
        except TemplateError as err:
            yield failed(str(err), FailureCode.VALIDATION)
            return
        opened: list[aiohttp.ClientWebSocketResponse] = []  # this call's socket (two calls may share a job id)
        try:
            async for status in self._queue_and_follow(template, workflow, values, job, opened):
                yield status
        finally:
            for ws in opened:
                if not ws.closed:
                    await ws.close()
                # aiohttp marks a socket that lost its connection closed without releasing that
                # connection (ClientWebSocketResponse.receive, ClientError path); release it here.
                response = getattr(ws, "_response", None)
                if response is not None:
                    response.close()

    async def _queue_and_follow(self, template: Template, workflow: dict[str, Any], values: dict[str, Any],
                                job: JobRequest, opened: list[aiohttp.ClientWebSocketResponse]
                                ) -> AsyncIterator[JobStatus]:
        try:
            notes = await self._prepare(template, workflow, job, values)
            client_id = uuid.uuid4().hex
            ws = await self._connect_ws(client_id)
            if ws is not None:
                opened.append(ws)  # closed by submit() whatever happens below
            reply = await self._request("POST", "/prompt", json_body={"prompt": workflow, "client_id": client_id},
                                        max_bytes=4 * 1024 * 1024)
            if reply.status == 400:
                body = reply.json(self.record.id)
                body = body if isinstance(body, dict) else {}
                # A model or node this server lacks is its own shortcoming: another ComfyUI may have it.
                code = FailureCode.CAPABILITY if lacks_model_or_node(body) else FailureCode.VALIDATION
                yield failed("; ".join(node_error_sentences(body)), code, comfyui=body)
                return
            if reply.status != 200:
                yield failed(f"ComfyUI refused the workflow (HTTP {reply.status})",
                             FailureCode.RUNTIME if reply.status < 500 else FailureCode.BAD_RESPONSE)
                return
            pid = str(reply.json(self.record.id)["prompt_id"])
        except _Refused as err:
            yield failed(str(err), err.code)
            return
        except (BacklotError, KeyError, TypeError, ValueError, AttributeError) as err:
            yield failed(f"{self.record.id}: could not queue the workflow: {_plain(err)}", _failure(err))
            return
        dropped = self._dropped.setdefault(pid, asyncio.Event())
        try:
            yield JobStatus(StatusCode.QUEUED, remote_ref=pid, message="; ".join([f"queued on {self.record.id}", *notes]),
                            detail={"template": template.name, "values": _jsonable(values)})
            async for status in self._follow(pid, workflow, ws, job, dropped):
                yield status
        except ServiceError as err:  # the server went away mid-job
            yield failed(f"{self.record.id}: lost contact while the job ran: {_plain(err)}", failure_for(err))
        except (BacklotError, KeyError, TypeError, ValueError, AttributeError) as err:  # junk where data was due
            yield failed(f"{self.record.id}: {_plain(err)}", _failure(err))
        finally:
            self._dropped.pop(pid, None)

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Pending: delete it from the queue. Running: interrupt it (confirmed when ComfyUI says so)."""
        try:
            queue = await self._json("/queue")
            if any(item[1] == remote_ref for item in queue.get("queue_pending", [])):
                await self._request("POST", "/queue", json_body={"delete": [remote_ref]})
                if remote_ref in self._dropped:
                    self._dropped[remote_ref].set()
                return CancelResult(True, "removed from ComfyUI's queue")
            if any(item[1] == remote_ref for item in queue.get("queue_running", [])):
                await self._request("POST", "/interrupt", json_body={"prompt_id": remote_ref})
                return CancelResult(False, "interrupt sent; waiting for ComfyUI to stop the job")
        except ServiceError as err:
            return CancelResult(False, f"could not reach ComfyUI to cancel: {_plain(err)}")
        return CancelResult(False, "ComfyUI is no longer running this job")

    async def lookup(self, remote_ref: str, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Re-attach after a restart by polling history and queue (events go to the old client id only)."""
        try:
            async for status in self._poll(remote_ref, job, time.monotonic() + self.job_timeout, recovering=True):
                yield status
        except (BacklotError, KeyError, TypeError, ValueError, AttributeError) as err:
            yield failed(f"{self.record.id}: cannot check the job: {_plain(err)}", _failure(err))

    async def close(self) -> None:
        """Nothing of its own to release; sessions belong to the pool."""
        self._dropped.clear()

    # ----- internals -----
    async def _prepare(self, template: Template, workflow: dict[str, Any], job: JobRequest,
                       params: dict[str, Any]) -> list[str]:
        notes: list[str] = []
        if template.requires_node:
            info = await self._json(f"/object_info/{template.requires_node}")
            if not info:
                raise _Refused(f"{self.record.id} has no {template.requires_node} node, which template "
                               f"{template.name} needs", FailureCode.CAPABILITY)
        for i, slot in enumerate(template.input_slots()):  # the job's input files, in the schema's order
            media = INPUT_SLOTS[slot].media
            if i >= len(job.inputs):
                if i == 0 and template.requires_input:
                    raise _Refused(f"template {template.name} needs an input {media} (--input FILE)")
                continue
            src = job.inputs[i]
            if not src.is_file():
                raise _Refused(f"input {media} {src} does not exist")
            name = await self._upload(src, job.id)
            for node, inp in template.bindings[slot]:
                workflow[node]["inputs"][inp] = name
        for param in template.models:
            for node, inp in template.bindings.get(param, []):
                cls = workflow[node]["class_type"]
                info = await self._json(f"/object_info/{cls}")
                spec = info.get(cls, {}).get("input", {}).get("required", {}).get(inp) if info else None
                choices = spec[0] if spec and isinstance(spec[0], list) else None
                wanted = workflow[node]["inputs"][inp]
                if not choices or wanted in choices or param in params or param not in template.families:
                    continue  # ComfyUI itself says what is missing, and the job fails over to a server that has it
                folder = model_folder(cls, inp) or "checkpoints"
                workflow[node]["inputs"][inp] = await self._same_family(template, param, folder, wanted, choices)
                notes.append(f"{wanted} is not on this server: using its one {title(template.families[param])} "
                             f"{param} {workflow[node]['inputs'][inp]} (name another with --param {param}=NAME)")
        return notes

    async def _same_family(self, template: Template, param: str, folder: str, wanted: str, choices: list[Any]) -> str:
        """The server's one model of the template's family to use instead of ``wanted``; refused when none or several."""
        family = template.families[param]
        names = [str(c) for c in choices]
        known = await families(self._session(), self.record.base_url, folder, names, self.timeout, self.record.id)
        using, same = only_one(family, names, known)
        if using is None:
            has = f"it has {len(same)}: {', '.join(same[:4])}" if same else "it has none"
            raise _Refused(f"{self.record.id} has no {param} {wanted}, nor exactly one {title(family)} {param} to use "
                           f"instead ({has}); name one with --param {param}=NAME", FailureCode.CAPABILITY)
        return using

    async def _upload(self, path: Path, job_id: str) -> str:
        data = await asyncio.to_thread(path.read_bytes)
        form = aiohttp.FormData()
        form.add_field("image", data, filename=f"backlot_{job_id}_{path.name}")
        form.add_field("overwrite", "true")
        reply = await self._request("POST", "/upload/image", data=form)
        if reply.status != 200:
            raise ServiceError(f"upload of {path.name} answered HTTP {reply.status}", ErrorClass.HTTP_ERROR,
                               service=self.record.id, status=reply.status)
        body = reply.json(self.record.id)
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else str(body["name"])

    async def _connect_ws(self, client_id: str) -> aiohttp.ClientWebSocketResponse | None:
        url = self.record.base_url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            ws = await self._session().ws_connect(url, heartbeat=20, timeout=aiohttp.ClientWSTimeout(ws_close=5),
                                                  max_msg_size=64 * 1024 * 1024)
            if self.preview_metadata:  # it must be the first frame the server reads from this client
                await ws.send_str(FEATURE_FLAGS)
            return ws
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            if ws is not None:
                await ws.close()
            log.info("%s: no WebSocket (%s); following the job by polling", self.record.id, _plain(err))
            return None

    async def _follow(self, pid: str, workflow: dict[str, Any], ws: aiohttp.ClientWebSocketResponse | None,
                      job: JobRequest, dropped: asyncio.Event) -> AsyncIterator[JobStatus]:
        deadline = time.monotonic() + self.job_timeout
        previews = PreviewWriter(job.output_dir, rate=self.preview_rate)
        if ws is not None:
            follower = SocketFollower(ws, pid, workflow, dropped, previews, idle=self.ws_idle)
            async for status in follower.statuses(deadline, self.job_timeout):
                yield status
                if status.code.terminal:
                    return
        async for status in self._poll(pid, job, deadline):
            if status.code is StatusCode.SUCCEEDED:
                await previews.discard()  # the result replaces the preview; a failed job keeps its last one
            yield status

    async def _poll(self, pid: str, job: JobRequest, deadline: float, recovering: bool = False) -> AsyncIterator[JobStatus]:
        """Follow a prompt through /history and /queue until it ends (no WebSocket needed)."""
        announced = False
        while time.monotonic() < deadline:
            entry = await self._history_entry(pid)
            if entry:
                async for status in self._finish(pid, entry, job):
                    yield status
                return
            queue = await self._json("/queue")
            if not isinstance(queue, dict):
                raise ServiceError("/queue is not a JSON object", ErrorClass.BAD_RESPONSE, service=self.record.id)
            running = any(i[1] == pid for i in queue.get("queue_running", []))
            waiting = any(i[1] == pid for i in queue.get("queue_pending", []))
            if not running and not waiting:
                if pid in self._dropped and self._dropped[pid].is_set():
                    yield JobStatus(StatusCode.CANCELLED, message="removed from ComfyUI's queue")
                    return
                entry = await self._history_entry(pid)  # it may have ended between the two reads
                if entry:
                    async for status in self._finish(pid, entry, job):
                        yield status
                    return
                yield failed(f"{self.record.id} no longer knows this job (it was restarted or cleared)",
                             FailureCode.UNKNOWN_REMOTE)
                return
            if not announced:
                announced = True
                yield JobStatus(StatusCode.RUNNING if running else StatusCode.QUEUED, remote_ref=pid,
                                message="following by polling" if not recovering else "re-attached after restart")
            await asyncio.sleep(self.poll_interval)
        yield failed(f"no result after {self.job_timeout:.0f} s", FailureCode.TIMEOUT)

    async def _history_entry(self, pid: str) -> dict[str, Any] | None:
        """The prompt's /history entry; None while it has none; a BAD_RESPONSE error for anything but an object."""
        history = await self._json(f"/history/{pid}")
        if not isinstance(history, dict):
            raise ServiceError("/history is not a JSON object", ErrorClass.BAD_RESPONSE, service=self.record.id)
        entry = history.get(pid)
        if entry is not None and not isinstance(entry, dict):
            raise ServiceError(f"/history/{pid} holds {type(entry).__name__} where a prompt's record was due",
                               ErrorClass.BAD_RESPONSE, service=self.record.id)
        return entry or None

    async def _finish(self, pid: str, entry: dict[str, Any], job: JobRequest) -> AsyncIterator[JobStatus]:
        status = entry.get("status") or {}
        messages = status.get("messages") or []
        kinds = [m[0] for m in messages if isinstance(m, list) and m]
        if status.get("status_str") != "success":
            if "execution_interrupted" in kinds:
                yield JobStatus(StatusCode.CANCELLED, message="interrupted in ComfyUI", remote_ref=pid)
                return
            err: dict[str, Any] = next((m[1] for m in messages if isinstance(m, list) and m and m[0] == "execution_error"), {})
            yield failed(execution_error_sentence(err) if err else "ComfyUI reported an error", FailureCode.RUNTIME,
                         comfyui=err)
            return
        try:
            outputs = await self._download_outputs(entry.get("outputs") or {}, job)
        except ServiceError as err:
            yield failed(f"the job finished but its files could not be fetched: {_plain(err)}",
                         FailureCode.MISSING_OUTPUT)
            return
        except (BacklotError, OSError) as err:  # our side: a full disk, a read-only output folder
            why = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) else str(err)
            yield failed(f"the job finished but its files could not be saved ({why})", FailureCode.STORAGE)
            return
        if not outputs:
            yield failed("ComfyUI finished but the workflow produced no files", FailureCode.MISSING_OUTPUT)
            return
        yield JobStatus(StatusCode.SUCCEEDED, fraction=1.0, remote_ref=pid, outputs=tuple(outputs),
                        message=f"{len(outputs)} file(s) from {self.record.id}")

    async def _download_outputs(self, outputs: dict[str, Any], job: JobRequest) -> list[OutputFile]:
        items = [f for ui in outputs.values() if isinstance(ui, dict) for v in ui.values() if isinstance(v, list)
                 for f in v if isinstance(f, dict) and "filename" in f]
        keep = [f for f in items if f.get("type") == "output"] or items  # previews only when nothing was saved
        files = []
        for f in keep:
            target = unique_path(job.output_dir, str(f["filename"]))
            await download(self._session(), self.record.base_url + "/view", target, timeout=self.download_timeout,
                           service=self.record.id, params={"filename": str(f["filename"]),
                                                           "subfolder": str(f.get("subfolder", "")),
                                                           "type": str(f.get("type", "output"))})
            files.append(await asyncio.to_thread(OutputFile.of, target))
        return files


class _Refused(Exception):
    """The job cannot run here as asked (missing input: validation; missing node: capability)."""

    def __init__(self, message: str, code: FailureCode = FailureCode.VALIDATION) -> None:
        super().__init__(message)
        self.code = code


def _failure(err: BaseException) -> FailureCode:
    """Transport errors keep their class; anything else unreadable from the server is a bad response."""
    if isinstance(err, ServiceError):
        return failure_for(err)
    return FailureCode.RUNTIME if isinstance(err, BacklotError) else FailureCode.BAD_RESPONSE


def _plain(err: BaseException) -> str:
    return err.args[0] if isinstance(err, ServiceError) and err.args else str(err) or type(err).__name__


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in values.items()}
