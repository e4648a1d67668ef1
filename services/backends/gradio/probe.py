"""The Gradio fingerprint (``/config``, any version) and health check (``queue/status``)."""
from __future__ import annotations

import time
from typing import Any

import aiohttp

from backlot.services.backends.spec import Identity, ProbeContext, int_or_none, json_or_none
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import get_json, request
from backlot.services.models import HealthSample, ServiceKind, ServiceRecord

KIND = ServiceKind("gradio")


def gradio_protocol(config: dict[str, Any]) -> str:
    """``gradio-3`` without a ``protocol`` key, ``gradio-4`` without ``api_prefix``, else ``gradio-<major>``."""
    major = str(config.get("version", "")).split(".")[0] or "?"
    if "protocol" not in config:
        return "gradio-3"
    if "api_prefix" not in config:
        return "gradio-4"
    return f"gradio-{major}" if major.isdigit() and int(major) >= 5 else "gradio-5"


def input_labels(config: dict[str, Any], ids: list[Any]) -> list[str]:
    """Lower-cased labels of the components with these ids."""
    comps = {c.get("id"): c for c in config.get("components", []) if isinstance(c, dict)}
    return [str(comps.get(i, {}).get("props", {}).get("label") or "").lower() for i in ids]


def api_names(config: dict[str, Any]) -> set[str]:
    """The ``api_name`` of every event of the app."""
    return {str(d.get("api_name")) for d in config.get("dependencies", []) if isinstance(d, dict) and d.get("api_name")}


async def fingerprint(ctx: ProbeContext) -> Identity | None:
    """``GET /config`` with ``version`` and ``dependencies`` is a Gradio app; each Gradio-based kind says if it is theirs."""
    body = await json_or_none(ctx, "/config", 16 * 1024 * 1024)
    if not (isinstance(body, dict) and "version" in body and "dependencies" in body):
        return None
    return identify(body, ctx)


def identify(config: dict[str, Any], ctx: ProbeContext) -> Identity:
    """The first kind whose matcher claims this app, else a Gradio app Backlot has no adapter for."""
    for spec in ctx.specs:
        if spec.gradio_match is not None:
            found = spec.gradio_match(config)
            if found is not None:
                return found
    return Identity(KIND, gradio_protocol(config), str(config.get("version", "")),
                    str(config.get("title", "")) or "Gradio app", usable=False,
                    hint="a Gradio app Backlot has no adapter for")


async def health(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """``queue/status`` (under ``/gradio_api`` on Gradio 5+) gives load; ``/config`` answers if it has none."""
    prefix = "/gradio_api" if rec.protocol not in ("gradio-3", "gradio-4") else ""
    reply = await request(session, "GET", f"{rec.base_url}{prefix}/queue/status", timeout=timeout, service=rec.id,
                          max_bytes=64 * 1024)
    if reply.status == 200:
        body = reply.json(rec.id)
        depth = int_or_none(body.get("queue_size")) if isinstance(body, dict) else None
        return HealthSample(rec.id, time.time(), True, reply.latency_ms, queue_depth=depth)
    if reply.status in (404, 405):
        body, reply = await get_json(session, rec.base_url + "/config", timeout=timeout, service=rec.id,
                                     max_bytes=16 * 1024 * 1024)
        if not isinstance(body, dict) or "version" not in body:
            raise ServiceError("/config is not a Gradio config", ErrorClass.BAD_RESPONSE, service=rec.id)
        return HealthSample(rec.id, time.time(), True, reply.latency_ms)
    raise ServiceError(f"queue/status answered HTTP {reply.status}",
                       ErrorClass.BUSY if reply.status in (429, 503) else ErrorClass.HTTP_ERROR,
                       service=rec.id, status=reply.status)
