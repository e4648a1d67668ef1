"""Wan2GP MCP stand-in: ``python -m backlot.standins.wan2gp --host H --port N --speed F --data DIR``.

Speaks the real Wan2GP MCP server's interface (``wgp.py --mcp --mcp-transport streamable-http``): a FastMCP
server named "WanGP" at /mcp/ (JSON responses, stateless), its tool names and schemas, a one-at-a-time job
queue that writes real MP4/PNG/WAV files into <data>/outputs, and the /wangp_api/gallery transfer routes.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from backlot.standins import _common, video
from backlot.standins.wan2gp_gallery import DEFAULT_MAX_UPLOAD_BYTES, Gallery, Transfers, media_type_of
from backlot.standins.wan2gp_jobs import JobRunner
from backlot.standins.wan2gp_models import Catalogue
from backlot.standins.wan2gp_tools import WanGPState, match_reference_schemas, register_docs, register_tools

log = logging.getLogger("backlot.standins.wan2gp")

MCP_PATH = "/mcp/"
NOT_ACCEPTABLE = {"jsonrpc": "2.0", "id": "server-error",
                  "error": {"code": -32600,
                            "message": "Not Acceptable: Client must accept both application/json and text/event-stream"}}


class SdkQuirks:
    """ASGI wrapper restoring two behaviours of mcp 1.10.1 (which Wan2GP pins) that newer SDKs changed.

    * A POST to /mcp/ must accept both JSON and SSE even in JSON-response mode (else 406, JSON-RPC -32600);
      newer SDKs accept JSON alone.
    * A GET /mcp/ for SSE opens a stream that never sends a byte and never ends (stateless mode has nothing
      to push); newer SDKs answer 200 and drop the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End open GET streams (at shutdown) instead of making uvicorn wait for them."""
        self._closing.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle the two quirks on /mcp/, pass everything else through."""
        if scope["type"] == "http" and scope["path"] == MCP_PATH:
            accept = ",".join(v.decode("latin-1") for k, v in scope["headers"] if k == b"accept")
            types = [t.strip() for t in accept.split(",")]
            json_ok = any(t.startswith("application/json") for t in types)
            sse_ok = any(t.startswith("text/event-stream") for t in types)
            if scope["method"] == "POST" and not (json_ok and sse_ok):
                await JSONResponse(NOT_ACCEPTABLE, status_code=406)(scope, receive, send)
                return
            if scope["method"] == "GET" and sse_ok:
                await self._silent_stream(receive, send)
                return
        await self.app(scope, receive, send)

    async def _silent_stream(self, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-store"), (b"connection", b"keep-alive"),
                                (b"x-accel-buffering", b"no")]})
        await send({"type": "http.response.body", "body": b"", "more_body": True})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiters = [asyncio.ensure_future(client_gone()), asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._closing.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def add_routes(mcp: FastMCP, state: WanGPState) -> None:
    """The gallery upload (PUT) and download (GET) routes the transfer tools hand out."""
    transfers, gallery = state.transfers, state.gallery

    @mcp.custom_route("/wangp_api/gallery/upload/{token}", methods=["PUT"], include_in_schema=False)
    async def upload_gallery_media(request: Request) -> Response:
        """Store the request body as the file reserved under the token and add it to the gallery."""
        transfer = transfers.consume_upload(request.path_params["token"])
        if transfer is None:
            return JSONResponse({"error": "Upload expired or not found."}, status_code=404)
        limit = transfers.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return JSONResponse({"error": "Invalid Content-Length header."}, status_code=400)
            if int(declared) > limit:
                return JSONResponse({"error": f"Upload exceeds the {limit}-byte limit."}, status_code=413)
        target = transfers.upload_path(transfer["filename"])
        size = 0
        try:
            with target.open("xb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ValueError(f"Upload exceeds the {limit}-byte limit.")
                    out.write(chunk)
            stats = await asyncio.to_thread(_upload_stats, target)
            record = gallery.add(target, {}, stats)
        except Exception as exc:  # any failure leaves no half-written file behind
            target.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                target.parent.rmdir()
            return JSONResponse({"error": str(exc)}, status_code=413 if size > limit else 400)
        log.info("upload stored %s (%s bytes)", target.name, size)
        return JSONResponse({"status": "uploaded", "size": size, **record})

    @mcp.custom_route("/wangp_api/gallery/download/{token}", methods=["GET"], include_in_schema=False)
    async def download_gallery_media(request: Request) -> Response:
        """Send the gallery file behind a one-use token."""
        item = transfers.consume_download(request.path_params["token"])
        if item is None:
            return JSONResponse({"error": "Download expired or not found."}, status_code=404)
        return FileResponse(item.path, filename=item.path.name,
                            media_type=mimetypes.guess_type(item.path.name)[0] or "application/octet-stream")


def _upload_stats(path: Path) -> dict[str, Any]:
    """What the gallery reports about an uploaded file (images: just the resolution)."""
    stats = video.probe(path)
    kind = media_type_of(path)
    if kind == "image":
        return {k: v for k, v in stats.items() if k == "resolution"}
    if kind == "audio":
        return {k: v for k, v in stats.items() if k == "duration_seconds"}
    return stats


def build(data: Path, speed: float = 1.0, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
          weights: set[str] | None = None, offline: bool = False) -> tuple[FastMCP, WanGPState]:
    """The FastMCP server and its state, not yet running (call state.runner.start())."""
    outputs = data / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    catalogue, gallery = Catalogue(weights=weights, offline=offline), Gallery(data)
    state = WanGPState(catalogue, gallery, Transfers(gallery, outputs / "mcp_uploads", max_upload_bytes),
                       JobRunner(catalogue, gallery, outputs, speed))
    mcp = FastMCP("WanGP", json_response=True, stateless_http=True, streamable_http_path=MCP_PATH,
                  log_level="WARNING",
                  # The stand-in may listen on 0.0.0.0 and be reached by any host name, like the real one.
                  transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    register_tools(mcp, state)
    match_reference_schemas(mcp)
    register_docs(mcp)
    add_routes(mcp, state)
    return mcp, state


class _Server(uvicorn.Server):
    """uvicorn that announces readiness once listening, stops the job queue first, and exits 0 on a signal."""

    def __init__(self, config: uvicorn.Config, app: SdkQuirks, state: WanGPState, host: str, port: int) -> None:
        super().__init__(config)
        self.app, self.state, self.host, self.port = app, state, host, port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then print the ready line."""
        await super().startup(sockets)
        if self.started:
            _common.announce("wan2gp", self.host, self.port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End idle streams and cancel jobs first, so open calls (wait=true) finish within the grace period."""
        self.app.close()
        await asyncio.to_thread(self.state.runner.stop)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Shut down, but don't let uvicorn re-raise the signal afterwards (that would end with -15, not 0)."""
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 lets the OS choose, so the announced port is really ours."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until SIGTERM or SIGINT."""
    ap = _common.common_parser("wan2gp", "Stand-in for Wan2GP's MCP server (wgp.py --mcp).")
    ap.add_argument("--max-upload-bytes", type=int, default=DEFAULT_MAX_UPLOAD_BYTES,
                    help=f"largest accepted gallery upload (default {DEFAULT_MAX_UPLOAD_BYTES})")
    ap.add_argument("--weights", metavar="MODEL,..",
                    help="the models whose weights are on disk, comma-separated, or 'none' (default: all but t2v)")
    ap.add_argument("--no-weights", action="store_const", const="none", dest="weights",
                    help="no model has its weights (like a fresh Wan2GP); same as --weights none")
    ap.add_argument("--offline", action="store_true",
                    help="a model without weights fails to download, as a Wan2GP without Internet access does")
    args = ap.parse_args(argv)
    _common.check_speed(ap, args.speed)
    weights = None if args.weights is None else {w.strip() for w in args.weights.split(",")
                                                 if w.strip() and w.strip() != "none"}
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = _common.data_dir(args.data, "wan2gp")
    try:
        mcp, state = build(data, args.speed, args.max_upload_bytes, weights, args.offline)
    except ValueError as err:
        ap.error(str(err))
    logging.getLogger("mcp").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    try:
        sock = bind(args.host, args.port)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    port = int(sock.getsockname()[1])
    app = SdkQuirks(mcp.streamable_http_app())
    config = uvicorn.Config(app, host=args.host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, lifespan="on")
    server = _Server(config, app, state, args.host, port)
    log.info("Wan2GP stand-in: data %s, speed %s", data, args.speed)
    state.runner.start()
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        state.runner.stop()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
