"""ComfyUI's fingerprint (``/system_stats``) and health check (VRAM, latency, queue)."""
from __future__ import annotations

import time

import aiohttp

from backlot.services.backends.spec import Identity, ProbeContext, int_or_none, json_or_none
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import get_json
from backlot.services.models import HealthSample, ServiceKind, ServiceRecord, VramReading

KIND = ServiceKind("comfyui")
TASKS = {"text_to_image": 0, "character_consistency": 0, "upscale": 0, "image_edit": 0, "video_to_video": 0,
         "text_to_video": 1, "image_to_video": 1, "quick_preview": 1}  # task -> preference (0 = first choice)


async def fingerprint(ctx: ProbeContext) -> Identity | None:
    """``GET /system_stats`` with ``system`` and ``devices`` is ComfyUI."""
    body = await json_or_none(ctx, "/system_stats", 256 * 1024)
    if not (isinstance(body, dict) and isinstance(body.get("system"), dict) and isinstance(body.get("devices"), list)):
        return None
    devices = [d.get("name", "") for d in body["devices"] if isinstance(d, dict)]
    return Identity(KIND, "comfyui", str(body["system"].get("comfyui_version", "")), "ComfyUI",
                    details={"devices": devices})


async def health(session: aiohttp.ClientSession, rec: ServiceRecord, timeout: aiohttp.ClientTimeout) -> HealthSample:
    """``/system_stats`` for VRAM and latency, ``/prompt`` for the queue."""
    stats, reply = await get_json(session, rec.base_url + "/system_stats", timeout=timeout, service=rec.id,
                                  max_bytes=256 * 1024)
    if not isinstance(stats, dict) or not isinstance(stats.get("devices"), list):
        raise ServiceError("system_stats has no devices list", ErrorClass.BAD_RESPONSE, service=rec.id)
    vram = []
    for dev in stats["devices"]:
        if not isinstance(dev, dict) or dev.get("type") == "cpu":  # a CPU "device" reports system RAM
            continue
        total, free = int_or_none(dev.get("vram_total")), int_or_none(dev.get("vram_free"))
        if total is not None and free is not None:
            vram.append(VramReading(str(dev.get("name", "gpu")), total, free, "comfyui"))
    queue, _ = await get_json(session, rec.base_url + "/prompt", timeout=timeout, service=rec.id, max_bytes=64 * 1024)
    depth = int_or_none(queue.get("exec_info", {}).get("queue_remaining")) if isinstance(queue, dict) else None
    return HealthSample(rec.id, time.time(), True, reply.latency_ms, queue_depth=depth, vram=tuple(vram))
