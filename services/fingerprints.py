"""Identify what listens on a base URL with one cheap request per protocol, in DESIGN.md's order."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from services.errors import ErrorClass, ServiceError
from services.http import get_json, request
from services.models import ServiceKind

WAN2GP_HINT = ("start Wan2GP with `--mcp --mcp-transport streamable-http` so Backlot can drive it "
               "(its web UI has no usable API)")
MCP_ACCEPT = "application/json, text/event-stream"
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                       "clientInfo": {"name": "backlot", "version": "0"}}}


@dataclass
class Identity:
    """What a fingerprint found."""

    kind: ServiceKind
    protocol: str
    version: str = ""
    title: str = ""
    usable: bool = True
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _is_dict(x: Any) -> bool:
    return isinstance(x, dict)


NOT_THIS = (ErrorClass.CLIENT_ERROR, ErrorClass.BAD_RESPONSE, ErrorClass.HTTP_ERROR)


async def _json_or_none(session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout,
                        max_bytes: int) -> Any:
    """The JSON at ``url``; None when something answers that is not it; connection failures propagate."""
    try:
        body, _ = await get_json(session, url, timeout=timeout, max_bytes=max_bytes)
    except ServiceError as err:
        if err.error_class in NOT_THIS:
            return None
        raise
    return body


async def comfyui(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """``GET /system_stats`` with ``system`` and ``devices`` is ComfyUI."""
    body = await _json_or_none(session, base + "/system_stats", timeout, 256 * 1024)
    if not (_is_dict(body) and _is_dict(body.get("system")) and isinstance(body.get("devices"), list)):
        return None
    devices = [d.get("name", "") for d in body["devices"] if _is_dict(d)]
    return Identity(ServiceKind.COMFYUI, "comfyui", str(body["system"].get("comfyui_version", "")), "ComfyUI",
                    details={"devices": devices})


def gradio_protocol(config: dict[str, Any]) -> str:
    """``gradio-3`` without a ``protocol`` key, ``gradio-4`` without ``api_prefix``, else ``gradio-<major>``."""
    major = str(config.get("version", "")).split(".")[0] or "?"
    if "protocol" not in config:
        return "gradio-3"
    if "api_prefix" not in config:
        return "gradio-4"
    return f"gradio-{major}" if major.isdigit() and int(major) >= 5 else "gradio-5"


def _labels(config: dict[str, Any], ids: list[Any]) -> list[str]:
    comps = {c.get("id"): c for c in config.get("components", []) if _is_dict(c)}
    return [str(comps.get(i, {}).get("props", {}).get("label") or "").lower() for i in ids]


def identify_gradio(config: dict[str, Any]) -> Identity:
    """Tell Wan2GP's web UI, RVC and AudioLDM from any other Gradio app by title, API names and inputs."""
    protocol = gradio_protocol(config)
    version = str(config.get("version", ""))
    title = str(config.get("title", ""))
    deps = [d for d in config.get("dependencies", []) if _is_dict(d)]
    names = {str(d.get("api_name")) for d in deps if d.get("api_name")}
    if title == "WanGP":
        return Identity(ServiceKind.WAN2GP, protocol, version, title, usable=False, hint=WAN2GP_HINT,
                        details={"webui_only": True})
    if title == "RVC WebUI" or {"infer_convert", "infer_change_voice"} & names:
        return Identity(ServiceKind.RVC, protocol, version, title or "RVC WebUI")
    for index, dep in enumerate(deps):
        labels = _labels(config, list(dep.get("inputs", [])))
        if any("duration" in label for label in labels) and sum(
                any(w in label for w in ("guidance", "seed", "candidate")) for label in labels) >= 2:
            return Identity(ServiceKind.AUDIOLDM, protocol, version, title or "AudioLDM",
                            details={"fn_index": index, "api_name": dep.get("api_name")})
    if "text2audio" in names:
        return Identity(ServiceKind.AUDIOLDM, protocol, version, title or "AudioLDM 2")
    return Identity(ServiceKind.GRADIO, protocol, version, title or "Gradio app", usable=False,
                    hint="a Gradio app Backlot has no adapter for")


async def gradio(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """``GET /config`` with ``version`` and ``dependencies`` is a Gradio app (any version)."""
    body = await _json_or_none(session, base + "/config", timeout, 16 * 1024 * 1024)
    if not (_is_dict(body) and "version" in body and "dependencies" in body):
        return None
    return identify_gradio(body)


async def mcp(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """``POST /mcp/`` initialize: ``serverInfo.name == "WanGP"`` is Wan2GP's MCP server."""
    try:
        reply = await request(session, "POST", base + "/mcp/", timeout=timeout, json_body=MCP_INIT,
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
    if not _is_dict(info) or info.get("name") != "WanGP":
        return None
    return Identity(ServiceKind.WAN2GP, "mcp", "", "WanGP", details={"mcp_sdk": info.get("version", "")})


async def openai(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """``GET /v1/models`` with an OpenAI list is an OpenAI-compatible LLM server."""
    try:
        body, _ = await get_json(session, base + "/v1/models", timeout=timeout, max_bytes=1024 * 1024)
    except ServiceError as err:
        if err.status in (401, 403):
            return Identity(ServiceKind.LLM, "openai", title="OpenAI-compatible server",
                            details={"models": [], "auth": "key required"})
        if err.error_class in NOT_THIS:
            return None
        raise
    if not (_is_dict(body) and isinstance(body.get("data"), list)):
        return None
    models = [str(m.get("id")) for m in body["data"] if _is_dict(m)]
    return Identity(ServiceKind.LLM, "openai", title="OpenAI-compatible server", details={"models": models})


async def ollama(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """``GET /api/tags`` with a ``models`` list is Ollama."""
    body = await _json_or_none(session, base + "/api/tags", timeout, 1024 * 1024)
    if not (_is_dict(body) and isinstance(body.get("models"), list)):
        return None
    models = [str(m.get("name")) for m in body["models"] if _is_dict(m)]
    version = ""
    try:
        ver, _ = await get_json(session, base + "/api/version", timeout=timeout, max_bytes=4096)
        version = str(ver.get("version", "")) if _is_dict(ver) else ""
    except ServiceError:
        pass  # old Ollama builds lack /api/version; the tags alone identify it
    return Identity(ServiceKind.LLM, "ollama", version, "Ollama", details={"models": models})


PROBES = (comfyui, gradio, mcp, openai, ollama)


async def identify(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """Try each fingerprint in order; None when something answers but is none of ours.

    A connection failure (refused, timeout, unreachable) propagates as ServiceError so the
    caller stops probing that port at once.
    """
    for probe in PROBES:
        found = await probe(session, base, timeout)
        if found is not None:
            return found
    return None
