"""ComfyUI stand-in: ComfyUI 0.8's HTTP + WebSocket API, running model-free nodes with Pillow."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

from backlot.standins._common import announce, check_speed, common_parser, data_dir


async def serve(argv: list[str]) -> int:
    """Run the server until SIGINT/SIGTERM."""
    from aiohttp import web

    from backlot.standins.comfyui.server import ComfyStandin, build_app

    ap = common_parser("comfyui", "ComfyUI 0.8 stand-in (HTTP + WebSocket API, model-free nodes).")
    ap.add_argument("--gpu-name", default=None, help="report a CUDA GPU with this name (default: CPU only)")
    ap.add_argument("--vram-total", type=float, default=None, help="GPU memory in GiB (with --gpu-name; default 24)")
    ap.add_argument("--vram-free", type=float, default=None, help="free GPU memory in GiB when idle")
    ap.add_argument("--job-vram", type=float, default=1.0, help="GiB a running prompt takes from the free VRAM")
    ap.add_argument("--comfyui-version", default="0.8.0", help="version reported in /system_stats")
    ap.add_argument("--checkpoints", default=None,
                    help="comma-separated checkpoint files this server has ('' = none; default: three common ones)")
    ap.add_argument("--models", action="append", default=[], metavar="FOLDER=A,B",
                    help="files of one model folder (checkpoints, diffusion_models, text_encoders, vae, "
                         "upscale_models); '' after = leaves it empty; repeatable")
    ap.add_argument("--model-arch", action="append", default=[], metavar="FILE=ARCH",
                    help="give a .safetensors file metadata naming its architecture (modelspec.architecture, "
                         "e.g. stable-diffusion-xl-v1-base), read through /view_metadata; repeatable")
    ap.add_argument("--without-nodes", default="", metavar="A,B",
                    help="node classes this server lacks (as if their node pack were not installed)")
    ap.add_argument("--preview-method", default="auto", choices=["none", "auto", "latent2rgb", "taesd"],
                    help="latent previews from sampler nodes (default auto; a real ComfyUI's default is none)")
    a = ap.parse_args(argv)
    check_speed(ap, a.speed)
    if a.checkpoints is not None:
        from backlot.standins.comfyui import model_nodes

        model_nodes.CHECKPOINTS[:] = [c.strip() for c in a.checkpoints.split(",") if c.strip()]
    for item in a.models:
        from backlot.standins.comfyui import model_nodes

        folder, _, files = item.partition("=")
        if folder not in model_nodes.FOLDER_FILES:
            ap.error(f"--models: unknown folder {folder!r} (known: {', '.join(model_nodes.FOLDER_FILES)})")
        model_nodes.FOLDER_FILES[folder][:] = [f.strip() for f in files.split(",") if f.strip()]
    for item in a.model_arch:
        from backlot.standins.comfyui import model_nodes

        name, _, arch = item.partition("=")
        model_nodes.METADATA[name.strip()] = {"modelspec.architecture": arch.strip()}
    if a.without_nodes:
        from backlot.standins.comfyui import nodes

        nodes.WITHOUT.update(n.strip() for n in a.without_nodes.split(",") if n.strip())
    state = ComfyStandin(data_dir(a.data, "comfyui"), a.speed, a.gpu_name, a.vram_total, a.vram_free,
                         a.job_vram, a.comfyui_version)
    if a.preview_method == "none":
        state.executor.send_preview = None
    app = build_app(state)

    async def close_sockets(_: web.Application) -> None:
        for q in list(state.clients.values()):
            q.put_nowait(None)

    app.on_shutdown.append(close_sockets)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, a.host, a.port)
    await site.start()
    port = runner.addresses[0][1]
    worker = asyncio.create_task(state.executor.run_forever(), name="comfy-executor")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announce("comfyui", a.host, port, data=str(state.folders.output.parent))
    try:
        await stop.wait()
    finally:
        state.executor.shutdown()  # a node thread still sleeping would hold the exit until it ends
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m backlot.standins comfyui``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s comfyui-standin %(levelname)s %(message)s")
    return asyncio.run(serve(sys.argv[1:] if argv is None else argv))
