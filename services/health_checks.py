"""One cheap health request per service kind: latency, queue depth and (ComfyUI) VRAM."""
from __future__ import annotations

import time
from typing import Any

import aiohttp

from services.errors import ErrorClass, ServiceError
from services.fingerprints import MCP_ACCEPT
from services.http import get_json, request
from services.models import HealthSample, ServiceKind, ServiceRecord, VramReading


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


async def comfyui(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """``/system_stats`` for VRAM and latency, ``/prompt`` for the queue."""
    stats, reply = await get_json(session, rec.base_url + "/system_stats", timeout=timeout, service=rec.id,
                                  max_bytes=256 * 1024)
    if not isinstance(stats, dict) or not isinstance(stats.get("devices"), list):
        raise ServiceError("system_stats has no devices list", ErrorClass.BAD_RESPONSE, service=rec.id)
    vram = []
    for dev in stats["devices"]:
        if not isinstance(dev, dict) or dev.get("type") == "cpu":  # a CPU "device" reports system RAM
            continue
        total, free = _int(dev.get("vram_total")), _int(dev.get("vram_free"))
        if total is not None and free is not None:
            vram.append(VramReading(str(dev.get("name", "gpu")), total, free, "comfyui"))
    queue, _ = await get_json(session, rec.base_url + "/prompt", timeout=timeout, service=rec.id, max_bytes=64 * 1024)
    depth = _int(queue.get("exec_info", {}).get("queue_remaining")) if isinstance(queue, dict) else None
    return HealthSample(rec.id, time.time(), True, reply.latency_ms, queue_depth=depth, vram=tuple(vram))


async def gradio(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """``queue/status`` (under ``/gradio_api`` on Gradio 5+) gives load; ``/config`` answers if it has none."""
    prefix = "/gradio_api" if rec.protocol not in ("gradio-3", "gradio-4") else ""
    reply = await request(session, "GET", f"{rec.base_url}{prefix}/queue/status", timeout=timeout, service=rec.id,
                          max_bytes=64 * 1024)
    if reply.status == 200:
        body = reply.json(rec.id)
        depth = _int(body.get("queue_size")) if isinstance(body, dict) else None
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


async def mcp(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """A JSON-RPC ``ping`` to the MCP endpoint."""
    reply = await request(session, "POST", rec.base_url + "/mcp/", timeout=timeout, service=rec.id,
                          json_body={"jsonrpc": "2.0", "id": "health", "method": "ping"},
                          headers={"Accept": MCP_ACCEPT, "Content-Type": "application/json"}, max_bytes=64 * 1024)
    if reply.status != 200:
        raise ServiceError(f"MCP ping answered HTTP {reply.status}", ErrorClass.HTTP_ERROR, service=rec.id,
                           status=reply.status)
    body = reply.json(rec.id)
    if not isinstance(body, dict) or "result" not in body:
        raise ServiceError("MCP ping gave no result", ErrorClass.BAD_RESPONSE, service=rec.id)
    return HealthSample(rec.id, time.time(), True, reply.latency_ms)


async def llm(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
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


async def check(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """The health check for this record's kind and protocol."""
    if rec.kind is ServiceKind.COMFYUI:
        return await comfyui(session, rec, timeout)
    if rec.protocol == "mcp":
        return await mcp(session, rec, timeout)
    if rec.kind is ServiceKind.LLM:
        return await llm(session, rec, timeout)
    return await gradio(session, rec, timeout)
