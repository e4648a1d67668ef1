"""Wan2GP: its MCP server's fingerprint (``initialize`` → ``WanGP``), its web UI's, and the health check."""
from __future__ import annotations

import re
import time
from typing import Any

import aiohttp

from backlot.services.backends.gradio.probe import gradio_protocol
from backlot.services.backends.gradio.probe import health as gradio_health
from backlot.services.backends.spec import NOT_THIS, Identity, ProbeContext
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import request
from backlot.services.models import HealthSample, ServiceKind, ServiceRecord

KIND = ServiceKind("wan2gp")
TASKS = {"text_to_video": 0, "image_to_video": 0, "quick_preview": 0}  # task -> preference (0 = first choice)
WEBUI_HINT = ("start Wan2GP with `--mcp --mcp-transport streamable-http` so Backlot can drive it "
              "(its web UI has no usable API)")
MCP_ACCEPT = "application/json, text/event-stream"
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                       "clientInfo": {"name": "backlot", "version": "0"}}}
# The web UI's header: <H1>Wan<SUP ...>GP</SUP> v12.60 <FONT ...>by <I>DeepBeepMeep</I> (wgp.py, WanGP_version)
_HEADER_VERSION = re.compile(r"Wan\s*(?:<SUP[^>]*>)?\s*GP\s*(?:</SUP>)?\s*v(\d+(?:\.\d+)+)", re.IGNORECASE)


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
    # serverInfo.version is the MCP SDK's (1.10.1), not Wan2GP's; the MCP server says nothing of its own version
    return Identity(KIND, "mcp", "", "WanGP", details={"mcp_sdk": info.get("version", "")})


def match_webui(config: dict[str, Any]) -> Identity | None:
    """A Gradio app titled ``WanGP`` is Wan2GP's web UI alone: listed, not usable, with the ``--mcp`` hint."""
    if config.get("title") != "WanGP":
        return None
    # /config's own "version" is Gradio's (5.29.0); Wan2GP's is only in the header it renders
    return Identity(KIND, gradio_protocol(config), webui_version(config), "WanGP", usable=False,
                    hint=WEBUI_HINT, details={"webui_only": True, "gradio": str(config.get("version", ""))})


def webui_version(config: dict[str, Any]) -> str:
    """Wan2GP's version ("12.60") from the header Markdown in the web UI's /config, or "" when not found."""
    components = config.get("components")
    for component in components if isinstance(components, list) else []:
        props = component.get("props") if isinstance(component, dict) else None
        value = props.get("value") if isinstance(props, dict) else None
        match = _HEADER_VERSION.search(value) if isinstance(value, str) else None
        if match:
            return match[1]
    return ""


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
