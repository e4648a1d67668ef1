"""LLM servers: OpenAI-compatible (``/v1/models``) and Ollama (``/api/tags``) fingerprints and health."""
from __future__ import annotations

import time

import aiohttp

from backlot.services.backends.spec import NOT_THIS, Identity, ProbeContext, json_or_none
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import get_json, request
from backlot.services.models import HealthSample, ServiceKind, ServiceRecord

KIND = ServiceKind("llm")
TASKS = {"text": 0}  # task -> preference (0 = first choice)


async def openai(ctx: ProbeContext) -> Identity | None:
    """``GET /v1/models`` with an OpenAI list is an OpenAI-compatible LLM server."""
    try:
        body, _ = await get_json(ctx.session, ctx.base + "/v1/models", timeout=ctx.timeout, max_bytes=1024 * 1024)
    except ServiceError as err:
        if err.status in (401, 403):
            return Identity(KIND, "openai", title="OpenAI-compatible server",
                            details={"models": [], "auth": "key required"})
        if err.error_class in NOT_THIS:
            return None
        raise
    if not (isinstance(body, dict) and isinstance(body.get("data"), list)):
        return None
    models = [str(m.get("id")) for m in body["data"] if isinstance(m, dict)]
    return Identity(KIND, "openai", title="OpenAI-compatible server", details={"models": models})


async def ollama(ctx: ProbeContext) -> Identity | None:
    """``GET /api/tags`` with a ``models`` list is Ollama."""
    body = await json_or_none(ctx, "/api/tags", 1024 * 1024)
    if not (isinstance(body, dict) and isinstance(body.get("models"), list)):
        return None
    models = [str(m.get("name")) for m in body["models"] if isinstance(m, dict)]
    version = ""
    try:
        ver, _ = await get_json(ctx.session, ctx.base + "/api/version", timeout=ctx.timeout, max_bytes=4096)
        version = str(ver.get("version", "")) if isinstance(ver, dict) else ""
    except ServiceError:
        pass  # old Ollama builds lack /api/version; the tags alone identify it
    return Identity(KIND, "ollama", version, "Ollama", details={"models": models})


async def health(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """The model list; a 401 still proves the server is there (it wants a key)."""
    path = "/api/tags" if rec.protocol == "ollama" else "/v1/models"
    reply = await request(session, "GET", rec.base_url + path, timeout=timeout, service=rec.id, max_bytes=1024 * 1024)
    if reply.status in (401, 403):
        return HealthSample(rec.id, time.time(), True, reply.latency_ms, message="needs an API key")
    if reply.status != 200:
        raise ServiceError(f"{path} answered HTTP {reply.status}", ErrorClass.HTTP_ERROR, service=rec.id,
                           status=reply.status)
    body = reply.json(rec.id)
    if not isinstance(body, dict):
        raise ServiceError(f"{path} is not a JSON object", ErrorClass.BAD_RESPONSE, service=rec.id)
    return HealthSample(rec.id, time.time(), True, reply.latency_ms)
