"""Wan2GP web UI stand-in: a current-Gradio Blocks app titled "WanGP" that, like wgp.py, offers no API.

``python -m backlot.standins wan2gp-webui``. Generating is a chain of private events sharing per-session
``gr.State`` (validate, save inputs, queue the task, prepare, activate status, process, finalize,
unload), so clients can recognise the web UI from ``/config`` but cannot drive it; Wan2GP's machine
interface is its MCP server (``standins.wan2gp``). A browser can still generate: it writes a small
preview MP4 to ``DATA/outputs`` named like Wan2GP's outputs.
"""
from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backlot.standins import _common
from backlot.standins._gradio_serve import configure_logging, install_stop_handlers, prepare_environment, serve

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

KIND = "wan2gp-webui"
WANGP_VERSION = "12.60"  # the version whose header this copies (wgp.py WanGP_version)
MODELS = [("Wan2.1 Text2video 14B", "t2v"), ("Wan2.1 Text2video 1.3B", "t2v_1.3B"),
          ("Wan2.1 Image2video 480p 14B", "i2v"), ("LTX Video 0.9.8 13B", "ltxv_13B"),
          ("Hunyuan Video Text2video 720p 13B", "hunyuan")]
RESOLUTIONS = ["832x480", "480x832", "1280x720", "720x1280", "624x624", "960x960"]
FPS = 16
PREVIEW_WIDTH = 320
# Simulated seconds per denoising step for 81 frames at 832x480; scales with frames x pixels.
_STEP_COST = 0.05
_PRIVATE = {"api_visibility": "private"}


def _new_state() -> dict[str, Any]:
    return {"queue": [], "inputs": {}, "gen": {"in_progress": False, "abort": False, "files": []}}


class Studio:
    """The generation side: a process-wide lock (one GPU) and the outputs folder."""

    def __init__(self, out_dir: Path, speed: float) -> None:
        self.out_dir = out_dir
        self.speed = speed
        self._gpu = threading.Lock()

    def validate_wizard_prompt(self, state: dict[str, Any], prompt: str) -> str:
        """Normalise the prompt (the real one expands the prompt wizard's variables)."""
        prompt = (prompt or "").strip()
        if not prompt:
            import gradio as gr

            raise gr.Error("Prompt is empty")
        return prompt

    def save_inputs(self, state: dict[str, Any], model_type: str, prompt: str, negative_prompt: str,
                    resolution: str, video_length: float, steps: float, guidance: float, seed: float) -> None:
        """Remember the form in the session state, as wgp.py does before queuing."""
        state["inputs"] = {"model_type": model_type, "prompt": prompt, "negative_prompt": negative_prompt,
                           "resolution": resolution, "video_length": int(video_length),
                           "num_inference_steps": int(steps), "guidance_scale": float(guidance),
                           "seed": int(seed if seed is not None else -1)}

    def process_prompt_and_add_tasks(self, state: dict[str, Any], model_type: str) -> str:
        """Turn the saved inputs into a queued task; answer the queue as HTML."""
        task = dict(state["inputs"], model_type=model_type, id=len(state["queue"]) + 1)
        if task["seed"] < 0:
            task["seed"] = int(np.random.default_rng().integers(0, 999_999_999))
        state["queue"].append(task)
        return self._queue_html(state)

    @staticmethod
    def _queue_html(state: dict[str, Any]) -> str:
        rows = "".join(f"<tr><td>{t['id']}</td><td>{t['model_type']}</td><td>{t['prompt'][:60]}</td></tr>"
                       for t in state["queue"])
        return f"<table><tr><th>#</th><th>Model</th><th>Prompt</th></tr>{rows}</table>" if rows else ""

    def prepare_generate_video(self, state: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Swap Generate for Abort while the queue runs."""
        import gradio as gr

        state["gen"].update(in_progress=True, abort=False)
        return gr.update(visible=False), gr.update(visible=True), gr.update(visible=True)

    def activate_status(self, state: dict[str, Any]) -> str:
        """Poke the hidden status trigger so the status box starts refreshing."""
        return str(time.time())

    def process_tasks(self, state: dict[str, Any]) -> Iterator[str]:
        """Run the session's queue step by step, yielding status text."""
        with self._gpu:
            while state["queue"] and not state["gen"]["abort"]:
                task = state["queue"][0]
                width, height = (int(v) for v in task["resolution"].split("x"))
                cost = _STEP_COST * task["video_length"] / 81 * width * height / (832 * 480) / self.speed
                steps = max(1, task["num_inference_steps"])
                for step in range(1, steps + 1):
                    if state["gen"]["abort"]:
                        break
                    time.sleep(cost)
                    yield f"Task {task['id']}: denoising step {step}/{steps}"
                else:
                    path = self._write_video(task, width, height)
                    log.info("task %s saved %s", task["id"], path)
                    state["gen"]["files"].append(str(path))
                    yield f"Task {task['id']}: saved"
                state["queue"].pop(0)
        yield "Aborted" if state["gen"]["abort"] else "Done"

    def _write_video(self, task: dict[str, Any], width: int, height: int) -> Path:
        """A small moving-gradient MP4 whose colours come from the prompt (a preview, not the full size)."""
        import av

        scale = PREVIEW_WIDTH / max(width, height)
        w, h = (max(16, int(v * scale) // 2 * 2) for v in (width, height))
        digest = hashlib.sha256(f"{task['seed']}|{task['prompt']}".encode()).digest()
        base = np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float32)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", task["prompt"]).strip("_")[:50]
        path = self.out_dir / f"{time.strftime('%Y-%m-%d-%Hh%Mm%Ss')}_seed{task['seed']}_{slug}.mp4"
        x = np.linspace(0, 1, w)[None, :, None]
        y = np.linspace(0, 1, h)[:, None, None]
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for k in range(max(1, task["video_length"])):
                phase = 2 * np.pi * k / 48
                img = 127 + 120 * np.sin(2 * np.pi * (x + y) + phase + base / 40.0)
                frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
                frame.pts, frame.time_base = k, Fraction(1, FPS)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return path

    def finalize_generation(self, state: dict[str, Any]) -> tuple[Any, ...]:
        """Show the outputs and put the buttons back."""
        import gradio as gr

        state["gen"]["in_progress"] = False
        files = state["gen"]["files"]
        info = f"Last video: {Path(files[-1]).name}" if files else ""
        return (files or None, gr.update(visible=False), gr.update(visible=True), gr.update(visible=False), info)

    def unload_model_if_needed(self, state: dict[str, Any]) -> None:
        """wgp.py frees VRAM here when its 'unload after generation' option is on."""

    def abort_generation(self, state: dict[str, Any]) -> Any:
        """Ask the running loop to stop after the current step."""
        import gradio as gr

        state["gen"]["abort"] = True
        return gr.update(visible=False)


def build_app(studio: Studio) -> gr.Blocks:
    """The Blocks app: only private events, chained like wgp.py's Generate button."""
    import gradio as gr

    with gr.Blocks(title="WanGP") as demo:
        gr.Markdown(f'<div align=center><H1>Wan<SUP style="color: #2563eb;">GP</SUP> v{WANGP_VERSION} <FONT SIZE=4>by '
                    '<I>DeepBeepMeep</I></FONT> <FONT SIZE=3></H1></div> (Backlot stand-in)')
        state = gr.State(_new_state())
        with gr.Row():
            with gr.Column():
                model_choice = gr.Dropdown(choices=MODELS, value="t2v", label="Model", interactive=True)
                prompt = gr.Textbox(label="Prompts (each new line of prompt will generate a new video, "
                                          "# lines = comments, ! lines = macros)", lines=3)
                negative_prompt = gr.Textbox(label="Negative Prompt", value="")
                resolution = gr.Dropdown(choices=RESOLUTIONS, value="832x480", label="Resolution")
                video_length = gr.Slider(5, 193, value=81, step=4, label="Number of frames (16 = 1s)")
                num_inference_steps = gr.Slider(1, 100, value=30, step=1, label="Number of Inference Steps")
                guidance_scale = gr.Slider(1.0, 20.0, value=5.0, step=0.5, label="Guidance Scale")
                seed = gr.Slider(-1, 999999999, value=-1, step=1, label="Seed (-1 for random)")
            with gr.Column():
                queue_html = gr.HTML()
                gen_status = gr.Text(label="Status", interactive=False)
                output = gr.Gallery(label="Generated videos", columns=[3], height="auto")
                gen_info = gr.Markdown()
                generate_btn = gr.Button("Generate")
                add_to_queue_btn = gr.Button("Add New Prompt To Queue", visible=False)
                abort_btn = gr.Button("Abort", visible=False)
                status_trigger = gr.Text(visible=False)
        # Generate = eight chained events sharing the session's state, as in wgp.py. .success: an empty
        # prompt ends the chain at the first link instead of queuing an empty task.
        form = [state, model_choice, prompt, negative_prompt, resolution, video_length, num_inference_steps,
                guidance_scale, seed]
        step = generate_btn.click(studio.validate_wizard_prompt, [state, prompt], [prompt], **_PRIVATE)
        step = step.success(studio.save_inputs, form, None, **_PRIVATE)
        step = step.then(studio.process_prompt_and_add_tasks, [state, model_choice], [queue_html], **_PRIVATE)
        step = step.then(studio.prepare_generate_video, [state], [generate_btn, add_to_queue_btn, abort_btn],
                         **_PRIVATE)
        step = step.then(studio.activate_status, [state], [status_trigger], **_PRIVATE)
        step = step.then(studio.process_tasks, [state], [gen_status], show_progress="hidden", **_PRIVATE)
        step = step.then(studio.finalize_generation, [state],
                         [output, abort_btn, generate_btn, add_to_queue_btn, gen_info], **_PRIVATE)
        step.then(studio.unload_model_if_needed, [state], None, **_PRIVATE)
        abort_btn.click(studio.abort_generation, [state], [abort_btn], **_PRIVATE)
    demo.queue()
    return demo


def main(argv: list[str] | None = None) -> int:
    """Run the WanGP web UI stand-in until SIGTERM/SIGINT."""
    stop = install_stop_handlers()
    ap = _common.common_parser(KIND, "Wan2GP web UI stand-in (Gradio 6, title 'WanGP', no API).")
    args = ap.parse_args(argv)
    _common.check_speed(ap, args.speed)
    configure_logging()
    data = _common.data_dir(args.data, KIND)
    prepare_environment(data)
    demo = build_app(Studio(data / "outputs", args.speed))
    # Wan2GP hides the "Use via API" footer link: its web UI is not an API.
    return serve(demo, KIND, args.host, args.port, stop, footer_links=["gradio", "settings"],
                 allowed_paths=[str(data / "outputs")], mcp_server=False, ssr_mode=False)


if __name__ == "__main__":
    sys.exit(main())
