"""AudioLDM stand-in: a Gradio 3.50 Blocks app shaped like AudioLDM's app.py, answering with waveform MP4s.

Run with the Gradio 3 interpreter: ``python -m backlot.standins audioldm``. One unnamed event (fn_index 0):
``text2audio(text, duration, guidance_scale, seed, n_candidates, model_name)`` -> a Video whose audio
track is 16 kHz mono, generated procedurally from the prompt and seed. Outputs land in ``DATA/outputs``.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from backlot.standins import _common
from backlot.standins._gradio_serve import configure_logging, install_stop_handlers, prepare_environment, serve
from backlot.standins.gradio3._soundscape import SR, synthesize
from backlot.standins.gradio3._waveform_video import write_waveform_mp4

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

KIND = "audioldm"
MODELS = ["audioldm-s-full", "audioldm-l-full", "audioldm-s-full-v2", "audioldm-m-text-ft",
          "audioldm-s-text-ft", "audioldm-m-full"]
MAX_DURATION = 60.0
# Simulated seconds: a model switch reloads checkpoints; sampling costs per second of audio per candidate.
_LOAD_COST, _BASE_COST, _SAMPLE_COST = 1.0, 0.3, 0.12
EXAMPLES = [
    ["A hammer is hitting a wooden surface", 5, 2.5, 45, 3, "audioldm-m-full"],
    ["Rain falling on a tin roof with distant thunder", 5, 2.5, 45, 3, "audioldm-m-full"],
    ["Wind blowing through trees while footsteps approach", 5, 2.5, 45, 3, "audioldm-m-full"],
    ["A female is speaking followed by footstep sound", 5, 2.5, 45, 3, "audioldm-m-full"],
]


class Generator:
    """The process-wide model (switching models costs a reload, as in the real app) and the output folder."""

    def __init__(self, out_dir: Path, speed: float) -> None:
        self.out_dir = out_dir
        self.speed = speed
        self._lock = threading.Lock()
        self._model = MODELS[-1]

    def text2audio(self, text: str, duration: float, guidance_scale: float, random_seed: float,
                   n_candidates: float, model_name: str = MODELS[-1]) -> str:
        """Generate ``duration`` seconds for ``text``; return the waveform MP4's path."""
        duration, candidates = float(duration), max(1, int(n_candidates or 1))
        if not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION:g}] seconds, got {duration}")
        model_name = model_name or MODELS[-1]
        if model_name not in MODELS:
            raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(MODELS)}")
        with self._lock:
            switching, self._model = model_name != self._model, model_name
        log.info("text2audio %r %.1fs seed=%s candidates=%s model=%s", text, duration, random_seed, candidates,
                 model_name)
        cost = (_LOAD_COST if switching else 0.0) + _BASE_COST + _SAMPLE_COST * duration * candidates
        time.sleep(cost / self.speed)
        seed = int(random_seed or 0)
        samples = synthesize(text or "", seed, duration, float(guidance_scale or 0), model_name)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "_", (text or "audio").lower()).strip("_")[:40] or "audio"
        path = self.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{seed}_{slug}.mp4"
        return str(write_waveform_mp4(path, samples, SR))


def build_app(generator: Generator) -> gr.Blocks:
    """The Blocks app: text2audio is the first (and only unnamed) event, so fn_index 0."""
    import gradio as gr

    with gr.Blocks() as iface:
        gr.HTML("<div style='text-align: center; max-width: 700px; margin: 0 auto;'><h1 style='font-weight: 900;'>"
                "AudioLDM: Text-to-Audio Generation with Latent Diffusion Models</h1>"
                "<p><a href='https://arxiv.org/abs/2301.12503'>[Paper]</a> (Backlot stand-in: procedural audio)"
                "</p></div>")
        with gr.Group():
            with gr.Box():
                textbox = gr.Textbox(value="A hammer is hitting a wooden surface", max_lines=1,
                                     label="Input your text here. Please ensure it is descriptive and of moderate "
                                           "length.", elem_id="prompt-in")
                with gr.Accordion("Click to modify detailed configurations", open=False):
                    seed = gr.Number(value=45, label="Change this value (any integer number) will lead to a "
                                                     "different generation result.")
                    duration = gr.Slider(2.5, 10, value=5, step=2.5, label="Duration (seconds)")
                    guidance_scale = gr.Slider(0, 5, value=2.5, step=0.5,
                                               label="Guidance scale (Large => better quality and relavancy to "
                                                     "text; Small => better diversity)")
                    n_candidates = gr.Slider(1, 5, value=3, step=1,
                                             label="Automatic quality control. This number control the number of "
                                                   "candidates (e.g., generate three audios and choose the best to "
                                                   "show you). A Larger value usually lead to better quality with "
                                                   "heavier computation")
                    model_name = gr.Dropdown(MODELS, value=MODELS[-1], label="Model Name")
                outputs = gr.Video(label="Output", elem_id="output-video")
                btn = gr.Button("Submit")
            inputs = [textbox, duration, guidance_scale, seed, n_candidates, model_name]
            btn.click(generator.text2audio, inputs=inputs, outputs=[outputs])
            gr.Examples(EXAMPLES, inputs=inputs, outputs=[outputs], fn=generator.text2audio,
                        cache_examples=False)
    iface.queue(concurrency_count=3, api_open=True)
    return iface


def main(argv: list[str] | None = None) -> int:
    """Run the AudioLDM stand-in until SIGTERM/SIGINT."""
    stop = install_stop_handlers()
    ap = _common.common_parser(KIND, "AudioLDM stand-in (Gradio 3.50, text2audio at fn_index 0).")
    args = ap.parse_args(argv)
    _common.check_speed(ap, args.speed)
    configure_logging()
    data = _common.data_dir(args.data, KIND)
    prepare_environment(data)
    app = build_app(Generator(data / "outputs", args.speed))
    return serve(app, KIND, args.host, args.port, stop)


if __name__ == "__main__":
    sys.exit(main())
