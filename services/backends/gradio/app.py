"""Shared Gradio transport: ``/config``, endpoint lookup, plain REST for Gradio 3.x, gradio_client for 4+."""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import mimetypes
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from backlot.services.backends.base import (
    CancelResult,
    FailureCode,
    JobStatus,
    SessionProvider,
    StatusCode,
    failed,
    failure_for,
    unique_path,
)
from backlot.services.backends.gradio.modern import ModernClient
from backlot.services.backends.gradio.probe import gradio_protocol
from backlot.services.backends.gradio.types import (
    FILE_TYPES,
    CallResult,
    Component,
    Endpoint,
    GradioError,
    GradioTimeouts,
    LocalFile,
    endpoints_of,
    file_ref,
)
from backlot.services.errors import BacklotError, ErrorClass, ServiceError, classify_status
from backlot.services.http import Reply, download, request

__all__ = ["FILE_TYPES", "CallResult", "Component", "Endpoint", "GradioApp", "GradioError", "GradioTimeouts",
           "LocalFile", "file_ref", "not_resumable", "progress"]

log = logging.getLogger(__name__)

CONFIG_MAX = 16 * 1024 * 1024     # big UIs (Wan2GP) have multi-megabyte configs
PREDICT_MAX = 64 * 1024 * 1024    # answers may carry base64 media inline


def not_resumable(what: str) -> JobStatus:
    """The one status ``lookup()`` can give for a Gradio job after a restart."""
    return failed(f"{what} answers each request while it runs and keeps no job list, so a job cut off by a "
                  "restart cannot be re-attached; submit it again", FailureCode.UNKNOWN_REMOTE)


class GradioApp:
    """One Gradio app: its config (read once), its endpoints, and calls over the right protocol."""

    def __init__(self, base_url: str, sessions: SessionProvider, *, service: str | None = None,
                 timeouts: GradioTimeouts | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service or self.base_url
        self.timeouts = timeouts or GradioTimeouts()
        self._sessions = sessions
        self._config: dict[str, Any] | None = None
        self._config_lock = asyncio.Lock()
        self._modern: ModernClient | None = None
        self._running: set[str] = set()  # refs of REST calls in flight (they cannot be stopped)

    async def load_config(self, refresh: bool = False) -> dict[str, Any]:
        """``GET /config`` once and cache it; GradioError when it is missing or not a Gradio config."""
        async with self._config_lock:
            if self._config is None or refresh:
                try:
                    reply = await request(self._sessions(), "GET", self.base_url + "/config",
                                          timeout=self.timeouts.client(self.timeouts.config), service=self.service,
                                          max_bytes=CONFIG_MAX)
                    if reply.status != 200:
                        raise ServiceError(f"HTTP {reply.status} for /config", ErrorClass.BAD_RESPONSE,
                                           service=self.service, status=reply.status)
                    config = reply.json(self.service)
                except ServiceError as err:
                    raise GradioError.of(err, "reading its Gradio config") from err
                if not (isinstance(config, dict) and isinstance(config.get("dependencies"), list)):
                    raise GradioError(f"{self.service}: /config is not a Gradio app's config",
                                      FailureCode.BAD_RESPONSE)
                self._config = config
            return self._config

    def forget_config(self) -> None:
        """Drop the cached config (after the app went away it may come back with another layout)."""
        self._config = None

    @property
    def protocol(self) -> str:
        """``gradio-3`` … ``gradio-6`` from the loaded config (``gradio-3`` before it is loaded)."""
        return gradio_protocol(self._config) if self._config is not None else "gradio-3"

    @property
    def legacy(self) -> bool:
        """True for Gradio 3.x, which only plain REST can drive."""
        return self.protocol == "gradio-3"

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint of the app."""
        return endpoints_of(await self.load_config())

    async def endpoint(self, api_name: str | None = None, *,
                       where: Callable[[Endpoint], bool] | None = None) -> Endpoint:
        """The endpoint named ``api_name`` (first choice) or else the first one matching ``where``."""
        eps = await self.endpoints()
        named = next((e for e in eps if api_name and e.api_name == api_name), None)
        if named is not None and (where is None or where(named)):
            return named
        match = next((e for e in eps if where is not None and where(e)), None)
        if match is None:
            wanted = f"an endpoint named {api_name!r}" if api_name else "a matching endpoint"
            raise GradioError(f"{self.service}: the app offers no {wanted} (is it another app or version?)",
                              FailureCode.BAD_RESPONSE)
        return match

    async def upload(self, path: Path) -> str:
        """Gradio 3 ``POST /upload``: put a local file on the server, return its server-side path."""
        try:
            payload = await asyncio.to_thread(path.read_bytes)
        except OSError as err:
            raise GradioError(f"cannot read {path}: {err.strerror or err}", FailureCode.VALIDATION) from err
        form = aiohttp.FormData()
        form.add_field("files", payload, filename=path.name,
                       content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        doing = f"uploading {path.name}"
        try:
            reply = await request(self._sessions(), "POST", self.base_url + "/upload", data=form,
                                  timeout=self.timeouts.client(self.timeouts.upload), service=self.service,
                                  max_bytes=1024 * 1024)
        except ServiceError as err:
            raise GradioError.of(err, doing) from err
        if reply.status != 200:
            raise GradioError(f"{self.service}: HTTP {reply.status} while {doing}", FailureCode.BAD_RESPONSE)
        try:
            paths = reply.json(self.service)
        except ServiceError as err:
            raise GradioError(f"{err} while {doing}", FailureCode.BAD_RESPONSE) from err
        if not (isinstance(paths, list) and paths and isinstance(paths[0], str)):
            raise GradioError(f"{self.service}: the upload answer has no server path", FailureCode.BAD_RESPONSE)
        return paths[0]

    async def call(self, ep: Endpoint, data: list[Any], output_dir: Path, *,
                   ref: str | None = None) -> AsyncIterator[JobStatus | CallResult]:
        """Run an endpoint: yield queue/progress statuses (4+ only), then one CallResult; GradioError on failure.

        ``ref`` names the call for ``cancel()`` (a new one is made when not given).
        """
        ref = ref or uuid.uuid4().hex[:11]
        await self.load_config()
        if self.legacy:
            yield await self._call_rest(ep, data, output_dir, ref)
            return
        if self._modern is None:
            self._modern = await asyncio.to_thread(_modern_client, self.base_url, self.service, self.timeouts)
        async for item in self._modern.call(ep, data, output_dir, ref):
            yield item

    async def run(self, ep: Endpoint, data: list[Any], output_dir: Path) -> CallResult:
        """``call`` for short calls whose progress nobody needs."""
        async for item in self.call(ep, data, output_dir):
            if isinstance(item, CallResult):
                return item
        raise GradioError(f"{self.service}: {ep.name} ended without a result", FailureCode.BAD_RESPONSE)

    async def _call_rest(self, ep: Endpoint, data: list[Any], output_dir: Path, ref: str) -> CallResult:
        values = [file_ref(await self.upload(v.path)) if isinstance(v, LocalFile) else v for v in data]
        # By api_name without fn_index where there is one: a stale fn_index would silently win over the name.
        body: dict[str, Any] = {"data": values, "session_hash": ref}
        if ep.api_name:
            url = f"{self.base_url}/run/{quote(ep.api_name, safe='')}"
        else:
            url, body["fn_index"] = self.base_url + "/run/predict", ep.fn_index
        doing = f"running {ep.name}"
        self._running.add(ref)
        try:
            reply = await request(self._sessions(), "POST", url, timeout=self.timeouts.client(self.timeouts.call),
                                  service=self.service, json_body=body, max_bytes=PREDICT_MAX)
        except ServiceError as err:
            if failure_for(err) is FailureCode.UNREACHABLE:
                self.forget_config()  # it may come back changed
            raise GradioError.of(err, doing) from err
        finally:
            self._running.discard(ref)
        outputs = self._rest_outputs(reply, ep)
        localised = [await self._localise(v, output_dir) if c.type in FILE_TYPES else v
                     for c, v in zip(ep.outputs, outputs)]
        return CallResult(localised, ref)

    def _rest_outputs(self, reply: Reply, ep: Endpoint) -> list[Any]:
        """The ``data`` list of a REST answer, or a GradioError saying what came instead."""
        where = f"{self.service}: {ep.name}"
        if reply.status == 500:
            # Gradio 3 answers {"error": str | null} when the function raised (null unless show_error).
            try:
                body = reply.json()
            except ServiceError:
                body = None
            error = str(body.get("error") or "").strip() if isinstance(body, dict) else ""
            if error:
                raise GradioError(f"{where} failed: {error.splitlines()[0]}", FailureCode.RUNTIME, error=error)
            raise GradioError(f"{where} failed on the server and did not say why (Gradio hides errors unless "
                              "the app is launched with show_error=True; its console shows the traceback)",
                              FailureCode.RUNTIME)
        if reply.status == 404:
            raise GradioError(f"{where} is not reachable over REST (the app may close its API)",
                              FailureCode.BAD_RESPONSE)
        if reply.status == 422:
            raise GradioError(f"{where} rejected the request: {reply.body[:300].decode(errors='replace')}",
                              FailureCode.VALIDATION)
        if reply.status != 200:
            err = ServiceError(f"HTTP {reply.status}", classify_status(reply.status), service=self.service,
                               status=reply.status)
            raise GradioError.of(err, f"running {ep.name}")
        try:
            body = reply.json(self.service)
        except ServiceError as err:
            raise GradioError(f"{where} {err.args[0]}", FailureCode.BAD_RESPONSE) from err
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != len(ep.outputs):
            got = f"{len(data)} values" if isinstance(data, list) else type(data).__name__
            raise GradioError(f"{where} answered with an unexpected shape (expected {len(ep.outputs)} output "
                              f"values, got {got})", FailureCode.BAD_RESPONSE)
        return data

    async def _localise(self, value: Any, output_dir: Path) -> Any:
        """Replace Gradio 3 file values (``is_file`` names or inline data URLs) by downloaded local Paths."""
        if isinstance(value, list):
            return [await self._localise(v, output_dir) for v in value]
        if not isinstance(value, dict):
            return value
        name, data = value.get("name"), value.get("data")
        if isinstance(data, str) and data.startswith("data:"):
            return await self._save_inline(data, str(value.get("orig_name") or name or "output"), output_dir)
        if isinstance(name, str) and name and (value.get("is_file") or data is None):
            return await self._download(name, str(value.get("orig_name") or Path(name).name), output_dir)
        return {k: await self._localise(v, output_dir) for k, v in value.items()}

    async def _download(self, name: str, filename: str, output_dir: Path) -> Path:
        """``GET /file=<name>`` streamed into the output folder."""
        doing = f"fetching the result file {Path(name).name}"
        target = unique_path(output_dir, filename)
        try:
            await download(self._sessions(), f"{self.base_url}/file={quote(name, safe='/:')}", target,
                           timeout=self.timeouts.client(self.timeouts.download), service=self.service)
        except ServiceError as err:
            raise GradioError.of(err, doing, FailureCode.MISSING_OUTPUT) from err
        except BacklotError as err:  # the local disk refused the file
            raise GradioError(f"{err} while {doing}", FailureCode.RUNTIME) from err
        return target

    async def _save_inline(self, data_url: str, filename: str, output_dir: Path) -> Path:
        head, _, payload = data_url.partition(",")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as err:
            raise GradioError(f"{self.service}: an output file is not valid base64", FailureCode.BAD_RESPONSE) \
                from err
        name = Path(filename).name
        if not Path(name).suffix:
            name += mimetypes.guess_extension(head[5:].split(";")[0]) or ""
        target = unique_path(output_dir, name)
        await asyncio.to_thread(target.write_bytes, raw)
        return target

    def in_flight(self, remote_ref: str) -> bool:
        """True while a REST call with this ref waits for its answer."""
        return remote_ref in self._running

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Drop queued work; say honestly that started work cannot be stopped."""
        if remote_ref in self._running:
            return CancelResult(False, f"{self.service} (Gradio 3 REST) cannot stop work that has started; "
                                       "it will run to the end there", can_stop=False)
        if self._modern is not None:
            return await self._modern.cancel(remote_ref)
        return CancelResult(False, f"{self.service} has no call {remote_ref!r} in flight (nothing to stop there)",
                            can_stop=False)

    async def close(self) -> None:
        """Release the gradio_client (sessions belong to the pool)."""
        if self._modern is not None:
            modern, self._modern = self._modern, None
            await modern.close()


def progress(step: int, total: int, message: str, remote_ref: str | None = None) -> JobStatus:
    """A PROGRESS status for step ``step`` of ``total`` (the fraction counts steps already done)."""
    return JobStatus(StatusCode.PROGRESS, fraction=(step - 1) / total, step=step, total=total, unit="steps",
                     message=message, remote_ref=remote_ref)


def _modern_client(base_url: str, service: str, timeouts: GradioTimeouts) -> ModernClient:
    """The gradio_client transport, made off the event loop (it creates its download folder)."""
    return ModernClient(base_url, service, timeouts)


class GradioAppBackend:
    """What every adapter on a Gradio app shares: cancel through the app, no re-attach, close the transport."""

    app: GradioApp
    record: Any
    display_name = "Gradio app"

    async def cancel(self, remote_ref: str) -> CancelResult:
        """Gradio can drop queued work; a running REST call cannot be stopped, and the result says so."""
        return await self.app.cancel(remote_ref)

    async def lookup(self, remote_ref: str, job: Any) -> AsyncIterator[JobStatus]:
        """Gradio calls are not resumable after a restart: one FAILED unknown_remote."""
        yield not_resumable(f"{self.display_name} ({self.record.id})")

    async def close(self) -> None:
        """Release the transport."""
        await self.app.close()
