"""aiohttp routes of the ComfyUI stand-in, matching a real ComfyUI 0.8.0 (see reference/comfyui.md)."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import platform
import struct
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from aiohttp import WSMsgType, web
from PIL import Image

from backlot.standins.comfyui.executor import Executor, Folders, now_ms
from backlot.standins.comfyui.nodes import node_specs
from backlot.standins.comfyui.validation import PromptError, validate_prompt

log = logging.getLogger(__name__)
GIB = 1024**3
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600, "extension": {"manager": {"supports_v4": True}}}
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
                 "latent_upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
                 "model_patches", "audio_encoders"]
EMPTY_500 = "500 Internal Server Error\n\nServer got itself in trouble"


class ComfyStandin:
    """The state behind the routes: WS clients, the executor, the folders and the GPU figures."""

    def __init__(self, root: Path, speed: float, gpu_name: str | None, vram_total: float | None,
                 vram_free: float | None, job_vram: float, version: str) -> None:
        self.folders = Folders.under(root)
        self.clients: dict[str, asyncio.Queue[str | bytes | None]] = {}
        self.metadata_clients: set[str] = set()  # sent feature_flags with supports_preview_metadata
        self.executor = Executor(self.folders, speed, self.send, int(job_vram * GIB), self.send_preview)
        self.gpu_name = gpu_name
        self.vram_total = int(vram_total * GIB) if vram_total else None
        self.vram_free = int(vram_free * GIB) if vram_free is not None else None
        self.version = version

    # ----- messaging -----
    def send(self, kind: str, data: dict[str, Any], sid: str | None) -> None:
        """Queue a frame for one client (the prompt's client_id) or, with no sid, for all."""
        text = json.dumps({"type": kind, "data": data})
        targets = [self.clients[sid]] if sid is not None and sid in self.clients else (
            [] if sid is not None else list(self.clients.values()))
        for q in targets:
            q.put_nowait(text)

    def send_preview(self, image_type: str, image: bytes, metadata: dict[str, Any], sid: str | None,
                     with_metadata: bool) -> None:
        """Queue a binary preview: type 4 (JSON metadata) to clients that asked for it, else type 1 (reference 4)."""
        for client in ([sid] if sid is not None else list(self.clients)):
            q = self.clients.get(client)
            if q is None or (client in self.metadata_clients) != with_metadata:
                continue
            if with_metadata:
                meta = json.dumps({**metadata, "image_type": "image/png" if image_type == "PNG" else "image/jpeg"})
                raw = meta.encode()
                q.put_nowait(struct.pack(">II", 4, len(raw)) + raw + image)
            else:
                q.put_nowait(struct.pack(">II", 1, 2 if image_type == "PNG" else 1) + image)

    def specs(self) -> dict[str, dict[str, Any]]:
        """object_info, with the current input files for LoadImage."""
        files = [p.relative_to(self.folders.input).as_posix() for p in self.folders.input.rglob("*") if p.is_file()]
        return node_specs(files)

    def devices(self) -> list[dict[str, Any]]:
        """The /system_stats devices list: a CUDA GPU when one is configured, else the CPU like ComfyUI --cpu."""
        mem = psutil.virtual_memory()
        if not self.gpu_name:
            return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": mem.total, "vram_free": mem.available,
                     "torch_vram_total": mem.total, "torch_vram_free": mem.available}]
        total = self.vram_total or 24 * GIB
        idle_free = self.vram_free if self.vram_free is not None else total - int(0.6 * GIB)
        free = max(0, idle_free - self.executor.vram_in_use)
        return [{"name": f"cuda:0 {self.gpu_name} : cudaMallocAsync", "type": "cuda", "index": 0,
                 "vram_total": total, "vram_free": free, "torch_vram_total": total - idle_free + self.executor.vram_in_use,
                 "torch_vram_free": 0}]

    # ----- routes -----
    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        """The /ws socket: a status frame at once, then the frames of this client's prompts."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        q: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.clients[sid] = q
        q.put_nowait(json.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": self.executor.queue_remaining()}}, "sid": sid}}))

        async def writer() -> None:
            while (item := await q.get()) is not None:
                await (ws.send_bytes(item) if isinstance(item, bytes) else ws.send_str(item))

        task = asyncio.create_task(writer(), name=f"comfy-ws-{sid}")
        first = True
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and first:
                    first = False
                    try:
                        body = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(body, dict) and body.get("type") == "feature_flags":
                        flags = body.get("data")
                        if isinstance(flags, dict) and flags.get("supports_preview_metadata"):
                            self.metadata_clients.add(sid)
                        q.put_nowait(json.dumps({"type": "feature_flags", "data": FEATURES}))
        finally:
            if self.clients.get(sid) is q:
                del self.clients[sid]
                self.metadata_clients.discard(sid)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return ws

    async def system_stats(self, request: web.Request) -> web.Response:
        """GET /system_stats."""
        mem = psutil.virtual_memory()
        return web.json_response({"system": {
            "os": sys.platform, "ram_total": mem.total, "ram_free": mem.available, "comfyui_version": self.version,
            "required_frontend_version": "1.35.9", "installed_templates_version": "0.7.67",
            "required_templates_version": "0.7.67", "python_version": sys.version,
            "pytorch_version": "2.13.0+cpu" if not self.gpu_name else "2.13.0+cu128", "embedded_python": False,
            "argv": sys.argv}, "devices": self.devices()})

    async def get_prompt(self, request: web.Request) -> web.Response:
        """GET /prompt: the queue count."""
        return web.json_response({"exec_info": {"queue_remaining": self.executor.queue_remaining()}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        """POST /prompt: validate and queue, or answer 400 in ComfyUI's error shape."""
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=500, text=EMPTY_500)
        if not isinstance(body, dict) or "prompt" not in body:
            err = PromptError("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response(err.body, status=400)
        try:
            runnable, outputs, node_errors = validate_prompt(body["prompt"], self.specs())
        except PromptError as err:
            return web.json_response(err.body, status=400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        extra["create_time"] = now_ms()
        number = body.get("number")
        number = self.executor.enqueue(prompt_id, float(number) if number is not None else None,  # type: ignore[arg-type]
                                       bool(body.get("front")), body["prompt"], runnable, outputs, extra)
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def object_info(self, request: web.Request) -> web.Response:
        """GET /object_info[/{node_class}]: unknown classes give 200 {}."""
        specs = self.specs()
        name = request.match_info.get("node_class")
        if name is None:
            return web.json_response(specs)
        return web.json_response({name: specs[name]} if name in specs else {})

    async def get_history(self, request: web.Request) -> web.Response:
        """GET /history[/{prompt_id}]: newest entries first when limited; unknown id gives 200 {}."""
        pid = request.match_info.get("prompt_id")
        hist = self.executor.history
        if pid is not None:
            return web.json_response({pid: hist[pid]} if pid in hist else {})
        items = list(hist.items())
        offset = int(request.query.get("offset", 0) or 0)
        if "max_items" in request.query:
            count = int(request.query["max_items"])
            end = len(items) - offset
            items = items[max(0, end - count):max(0, end)]
        elif offset:
            items = items[:max(0, len(items) - offset)]
        return web.json_response(dict(items))

    async def post_history(self, request: web.Request) -> web.Response:
        """POST /history {delete: [...]} or {clear: true}."""
        body = await _json_or_empty(request)
        if body.get("clear"):
            self.executor.history.clear()
        for pid in body.get("delete", []) or []:
            self.executor.history.pop(pid, None)
        return web.Response()

    async def get_queue(self, request: web.Request) -> web.Response:
        """GET /queue: running and pending items (pending in heap order)."""
        running, pending = self.executor.queue_items()
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request: web.Request) -> web.Response:
        """POST /queue {delete: [...]} or {clear: true}; the running prompt is never touched."""
        body = await _json_or_empty(request)
        if body.get("clear"):
            self.executor.clear()
        if body.get("delete"):
            self.executor.delete(list(body["delete"]))
        return web.Response()

    async def interrupt(self, request: web.Request) -> web.Response:
        """POST /interrupt [{prompt_id}]."""
        body = await _json_or_empty(request)
        self.executor.interrupt(body.get("prompt_id"))
        return web.Response()

    async def free(self, request: web.Request) -> web.Response:
        """POST /free: nothing is loaded, so nothing to free."""
        await _json_or_empty(request)
        return web.Response()

    async def upload_image(self, request: web.Request) -> web.Response:
        """POST /upload/image (multipart image, overwrite, subfolder, type), deduplicating like ComfyUI."""
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        kind = str(post.get("type") or "input")
        root = {"input": self.folders.input, "temp": self.folders.temp, "output": self.folders.output}.get(kind)
        if root is None:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        folder = Path(os.path.abspath(root / os.path.normpath(subfolder))) if subfolder else root
        target = Path(os.path.abspath(folder / image.filename))
        if os.path.commonpath((str(root), str(target))) != str(root):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        name = image.filename
        if str(post.get("overwrite")) not in ("true", "1"):
            stem, ext = os.path.splitext(image.filename)
            i = 1
            while target.exists():
                if hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest():
                    break
                name = f"{stem} ({i}){ext}"
                target = folder / name
                i += 1
        if not target.exists() or str(post.get("overwrite")) in ("true", "1"):
            target.write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    async def view(self, request: web.Request) -> web.StreamResponse:
        """GET /view with ComfyUI's 400/403/404 refusals, preview and channel options."""
        q = request.query
        if "filename" not in q:
            return web.Response(status=404)
        filename, kind = q["filename"], None
        for tag in ("output", "input", "temp"):
            if filename.endswith(f" [{tag}]"):
                filename, kind = filename[: -len(tag) - 3], tag
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        kind = kind or q.get("type", "output")
        root = {"input": self.folders.input, "temp": self.folders.temp, "output": self.folders.output}.get(kind)
        if root is None:
            return web.Response(status=400)
        folder = str(root)
        if "subfolder" in q:
            full = os.path.join(folder, q["subfolder"])
            if os.path.commonpath((os.path.abspath(full), folder)) != folder:
                return web.Response(status=403)
            folder = full
        filename = os.path.basename(filename)
        path = Path(folder) / filename
        if not path.is_file():
            return web.Response(status=404)
        if "preview" in q or q.get("channel") in ("rgb", "a"):
            return _converted(path, q.get("preview"), q.get("channel"), filename)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{filename}"'})

    async def jobs(self, request: web.Request) -> web.Response:
        """GET /api/jobs: ComfyUI's newer jobs listing built from the queue and history."""
        wanted = set(filter(None, request.query.get("status", "").split(","))) or None
        rows = [r for r in self._job_rows() if wanted is None or r["status"] in wanted]
        rows.sort(key=lambda r: r["create_time"] or 0, reverse=request.query.get("sort_order", "desc") == "desc")
        offset = int(request.query.get("offset", 0) or 0)
        limit = int(request.query["limit"]) if request.query.get("limit") else None
        page = rows[offset:offset + limit if limit is not None else None]
        return web.json_response({"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": len(rows),
                                                               "has_more": offset + len(page) < len(rows)}})

    async def job(self, request: web.Request) -> web.Response:
        """GET /api/jobs/{job_id}: unknown ids are a real 404 here."""
        jid = request.match_info["job_id"]
        for row in self._job_rows():
            if row["id"] == jid:
                entry = self.executor.history.get(jid)
                item = entry["prompt"] if entry else next(i for i in sum(self.executor.queue_items(), []) if i[1] == jid)
                row.update({"outputs": entry["outputs"] if entry else {},
                            "execution_status": entry["status"] if entry else None,
                            "workflow": {"prompt": item[2], "extra_data": item[3]}})
                errors = [m[1] for m in (entry or {}).get("status", {}).get("messages", []) if m[0] == "execution_error"]
                if errors:
                    row["execution_error"] = errors[0]
                return web.json_response(row)
        return web.json_response({"error": "Job not found"}, status=404)

    def _job_rows(self) -> list[dict[str, Any]]:
        running, pending = self.executor.queue_items()
        rows = [_job_row(i, "in_progress", None) for i in running] + [_job_row(i, "pending", None) for i in pending]
        for pid, entry in self.executor.history.items():
            ok = entry["status"]["status_str"] == "success"
            rows.append(_job_row(entry["prompt"], "completed" if ok else "failed", entry))
        return rows


def _job_row(item: list[Any], status: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    msgs = {m[0]: m[1] for m in (entry or {}).get("status", {}).get("messages", [])}
    start = msgs.get("execution_start", {}).get("timestamp")
    end = next((msgs[k]["timestamp"] for k in ("execution_success", "execution_error", "execution_interrupted") if k in msgs), None)
    outputs = (entry or {}).get("outputs", {})
    preview = None
    for nid, ui in outputs.items():
        for media, files in ui.items():
            if files:
                preview = {**files[0], "nodeId": nid, "mediaType": media}
                break
        if preview:
            break
    return {"id": item[1], "status": status, "priority": item[0], "create_time": item[3].get("create_time"),
            "execution_start_time": start, "execution_end_time": end,
            "outputs_count": sum(len(f) for ui in outputs.values() for f in ui.values()), "preview_output": preview}


def _converted(path: Path, preview: str | None, channel: str | None, filename: str) -> web.Response:
    with Image.open(path) as im:
        im.load()
        if channel == "a":
            im = Image.merge("RGBA", [Image.new("L", im.size, 255)] * 3 + [im.convert("RGBA").getchannel("A")])
        elif channel == "rgb":
            im = im.convert("RGB")
        buf = io.BytesIO()
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") else "webp"
            im.convert("RGB").save(buf, format=fmt.upper(), quality=int(quality or 90))
            return web.Response(body=buf.getvalue(), content_type=f"image/{fmt}",
                                headers={"Content-Disposition": f'filename="{filename}"'})
        im.save(buf, format="PNG")
    return web.Response(body=buf.getvalue(), content_type="image/png",
                        headers={"Content-Disposition": f'filename="{filename}"'})


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def _index(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>ComfyUI</title><p>Backlot's ComfyUI stand-in "
                             f"({platform.node()}). Use the HTTP API.</p>", content_type="text/html")


async def _models_in(request: web.Request) -> web.Response:
    """GET /models/{folder}: the files of one model folder (those the model nodes offer, as configured)."""
    from backlot.standins.comfyui.model_nodes import FOLDER_FILES

    folder = request.match_info["folder"]
    if folder not in MODEL_FOLDERS:
        return web.Response(status=404, text="404: Not Found")
    return web.json_response(list(FOLDER_FILES.get(folder, [])))


async def _view_metadata(request: web.Request) -> web.Response:
    """GET /view_metadata/{folder}?filename=: a safetensors file's ``__metadata__``; 404 when it has none (as ComfyUI)."""
    from backlot.standins.comfyui.model_nodes import FOLDER_FILES, METADATA

    folder, name = request.match_info["folder"], request.rel_url.query.get("filename", "")
    meta = METADATA.get(name)
    if not name.endswith(".safetensors") or name not in FOLDER_FILES.get(folder, []) or meta is None:
        return web.Response(status=404)
    return web.json_response(meta)


def build_app(state: ComfyStandin) -> web.Application:
    """The aiohttp application: every route also under /api, like ComfyUI."""
    app = web.Application(client_max_size=104857600)
    routes = [
        ("GET", "/ws", state.ws), ("GET", "/system_stats", state.system_stats),
        ("GET", "/features", partial(_json, FEATURES)), ("GET", "/embeddings", partial(_json, [])),
        ("GET", "/extensions", partial(_json, [])), ("GET", "/models", partial(_json, MODEL_FOLDERS)),
        ("GET", "/models/{folder}", _models_in), ("GET", "/view_metadata/{folder}", _view_metadata),
        ("GET", "/prompt", state.get_prompt), ("POST", "/prompt", state.post_prompt),
        ("GET", "/object_info", state.object_info), ("GET", "/object_info/{node_class}", state.object_info),
        ("GET", "/history", state.get_history), ("GET", "/history/{prompt_id}", state.get_history),
        ("POST", "/history", state.post_history), ("GET", "/queue", state.get_queue),
        ("POST", "/queue", state.post_queue), ("POST", "/interrupt", state.interrupt), ("POST", "/free", state.free),
        ("POST", "/upload/image", state.upload_image), ("GET", "/view", state.view),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    app.router.add_get("/api/jobs", state.jobs)
    app.router.add_get("/api/jobs/{job_id}", state.job)
    app.router.add_get("/", _index)
    return app


async def _json(body: Any, request: web.Request) -> web.Response:
    return web.json_response(body)
