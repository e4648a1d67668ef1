"""Wan2GP: its MCP server's fingerprint (``initialize`` → ``WanGP``), its web UI's, and the health check."""
from __future__ import annotations

import time
from typing import Any

import aiohttp

from services.backends.gradio.probe import gradio_protocol
from services.backends.gradio.probe import health as gradio_health
from services.backends.spec import NOT_THIS, Identity, ProbeContext
from services.errors import ErrorClass, ServiceError
from services.http import request
from services.models import HealthSample, ServiceKind, ServiceRecord

KIND = ServiceKind("wan2gp")
TASKS = {"text_to_video": 0, "image_to_video": 0, "quick_preview": 0}  # task -> preference (0 = first choice)
WEBUI_HINT = ("start Wan2GP with `--mcp --mcp-transport streamable-http` so Backlot can drive it "
              "(its web UI has no usable API)")
MCP_ACCEPT = "application/json, text/event-stream"
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                       "clientInfo": {"name": "backlot", "version": "0"}}}


async def fingerprint(ctx: ProbeContext) -> Identity | None:
    """``POST /mcp/`` initialize: ``serverInfo.name == "WanGP"`` is Wan2GP's MCP server."""
    try:
        reply = await request(ctx.session, "POST", ctx.base + "/mcp/", timeout=ctx.timeout, json_body=MCP_INIT,
                              headers={"Accept": MCP_ACCEPT, "Content-Type": "application/json"}, max_bytes=256 * 1024)
    except ServiceError as err:
        if err.error_class in NOT_THIS:
            return None
        raise
    if reply.status != 200 or "json" not in reply.content_type:
        return None  # an SSE answer or anything else is not the JSON-response server we drive
    try:
        info = reply.json().get("result", {}).get("serverInfo", {})
    except (ServiceError, AttributeError):
        return None
    if not isinstance(info, dict) or info.get("name") != "WanGP":
        return None
    return Identity(KIND, "mcp", "", "WanGP", details={"mcp_sdk": info.get("version", "")})


def match_webui(config: dict[str, Any]) -> Identity | None:
    """A Gradio app titled ``WanGP`` is Wan2GP's web UI alone: listed, not usable, with the ``--mcp`` hint."""
    if config.get("title") != "WanGP":
        return None
    return Identity(KIND, gradio_protocol(config), str(config.get("version", "")), "WanGP", usable=False,
                    hint=WEBUI_HINT, details={"webui_only": True})


async def health(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """A JSON-RPC ``ping`` to the MCP endpoint (the web UI alone gets the Gradio check)."""
    if rec.protocol != "mcp":
        return await gradio_health(session, rec, timeout)
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
