"""RVC WebUI stand-in: a Gradio 3.50 Blocks app shaped like RVC's infer-web.py, converting audio for real.

Run with the Gradio 3 interpreter: ``python -m backlot.standins rvc [--layout old|new]``. ``old`` (default) is
the long-standing infer-web.py (12-input ``infer_convert``, audio as a server path); ``new`` is the later
9-input layout with an audio upload. Voices live in ``DATA/assets/weights``, indexes in ``DATA/logs``.
"""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from backlot.standins import _common
from backlot.standins._gradio_serve import configure_logging, install_stop_handlers, prepare_environment, serve
from backlot.standins.gradio3._rvc_engine import VoiceEngine

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

KIND = "rvc"
F0_METHODS_OLD = ["pm", "harvest", "crepe", "rmvpe"]
F0_METHODS_NEW = ["pm", "rmvpe", "fcpe"]
L_F0 = ("Select the pitch extraction algorithm ('pm': faster extraction but lower-quality speech; 'harvest': "
        "better bass but extremely slow; 'crepe': better quality but GPU intensive), 'rmvpe': best quality, "
        "and little GPU requirement")
L_TRANSPOSE = "Transpose (integer, number of semitones, raise by an octave: 12, lower by an octave: -12):"
L_INDEX_PATH = "Path to the feature index file. Leave blank to use the selected result from the dropdown:"
L_INDEX_AUTO = "Auto-detect index path and select from the dropdown:"
L_RESAMPLE = "Resample the output audio in post-processing to the final sample rate. Set to 0 for no resampling:"
L_RMS = ("Adjust the volume envelope scaling. Closer to 0, the more it mimicks the volume of the original "
         "vocals. Closer to 1 will be more of a consistently loud volume:")
L_PROTECT = ("Protect voiceless consonants and breath sounds to prevent artifacts such as tearing in electronic "
             "music. Set to 0.5 to disable. Decrease the value to increase protection, but it may reduce "
             "indexing accuracy:")
L_FILTER = ("If >=3: apply median filtering to the harvested pitch results. The value represents the filter "
            "radius and can reduce breathiness.")
L_INDEX_RATE = "Search feature ratio (controls accent strength, too high has artifacting):"


def _common_sliders(gr: Any, rms: float, index_rate: float) -> tuple[Any, ...]:
    """resample sr, rms mix rate, protect, filter radius and index rate, as both tabs have them."""
    resample = gr.Slider(minimum=0, maximum=48000, label=L_RESAMPLE, value=0, step=1, interactive=True)
    rms_mix = gr.Slider(minimum=0, maximum=1, label=L_RMS, value=rms, interactive=True)
    protect = gr.Slider(minimum=0, maximum=0.5, label=L_PROTECT, value=0.33, step=0.01, interactive=True)
    filter_radius = gr.Slider(minimum=0, maximum=7, label=L_FILTER, value=3, step=1, interactive=True)
    rate = gr.Slider(minimum=0, maximum=1, label=L_INDEX_RATE, value=index_rate, interactive=True)
    return resample, rms_mix, protect, filter_radius, rate


def build_app(engine: VoiceEngine, layout: str = "old") -> gr.Blocks:
    """The Blocks app; event order and api_names follow infer-web.py."""
    import gradio as gr

    with gr.Blocks(title="RVC WebUI") as app:
        gr.Markdown("## RVC WebUI")
        gr.Markdown("This software is open source under the MIT license. (Backlot stand-in: no real models.)")
        with gr.Tabs():
            with gr.TabItem("Model Inference"):
                with gr.Row():
                    sid0 = gr.Dropdown(label="Inferencing voice:", choices=engine.names())
                    with gr.Column():
                        refresh_button = gr.Button("Refresh voice list and index path", variant="primary")
                        clean_button = gr.Button("Unload voice to save GPU memory:", variant="primary")
                    spk_item = gr.Slider(minimum=0, maximum=2333, step=1, label="Select Speaker/Singer ID:",
                                         value=0, visible=False, interactive=True)
                    clean_button.click(fn=lambda: {"value": "", "__type__": "update"}, inputs=[], outputs=[sid0],
                                       api_name="infer_clean")
                with gr.Tabs():
                    with gr.TabItem("Single inference"):
                        if layout == "new":
                            convert_inputs, file_index2, protect0, vc_output1, vc_output2, but0 = \
                                _single_tab_new(gr, engine, spk_item)
                            single_fn = _new_signature(engine)
                        else:
                            convert_inputs, file_index2, protect0, vc_output1, vc_output2, but0 = \
                                _single_tab_old(gr, engine, spk_item)
                            single_fn = engine.vc_single
                        refresh_button.click(fn=engine.change_choices, inputs=[], outputs=[sid0, file_index2],
                                             api_name="infer_refresh")
                        but0.click(single_fn, convert_inputs, [vc_output1, vc_output2], api_name="infer_convert")
                    with gr.TabItem("Batch inference"):
                        file_index4, protect1 = _batch_tab(gr, engine, spk_item, refresh_button)
                sid0.change(fn=engine.get_vc, inputs=[sid0, protect0, protect1],
                            outputs=[spk_item, protect0, protect1, file_index2, file_index4],
                            api_name="infer_change_voice")
    # infer-web.py queues everything; REST stays open (api_open) so clients may skip the queue.
    app.queue(concurrency_count=511, max_size=1022, api_open=True)
    return app


def _single_tab_old(gr: Any, engine: VoiceEngine, spk_item: Any) -> tuple[Any, ...]:
    with gr.Group():
        with gr.Row():
            with gr.Column():
                vc_transform0 = gr.Number(label=L_TRANSPOSE, value=0)
                input_audio0 = gr.Textbox(
                    label="Enter the path of the audio file to be processed (default is the correct format example):",
                    placeholder="C:\\Users\\Desktop\\audio_example.wav")
                file_index1 = gr.Textbox(label=L_INDEX_PATH, placeholder="C:\\Users\\Desktop\\model_example.index",
                                         interactive=True)
                file_index2 = gr.Dropdown(label=L_INDEX_AUTO, choices=engine.index_paths(), interactive=True)
                f0method0 = gr.Radio(label=L_F0, choices=F0_METHODS_OLD, value="rmvpe", interactive=True)
            with gr.Column():
                resample_sr0, rms_mix_rate0, protect0, filter_radius0, index_rate1 = _common_sliders(gr, 0.25, 0.75)
                f0_file = gr.File(label="F0 curve file (optional). One pitch per line. Replaces the default F0 "
                                        "and pitch modulation:", visible=False)
    with gr.Group():
        with gr.Column():
            but0 = gr.Button("Convert", variant="primary")
            with gr.Row():
                vc_output1 = gr.Textbox(label="Output information")
                vc_output2 = gr.Audio(label="Export audio (click on the three dots in the lower right corner "
                                            "to download)")
    inputs = [spk_item, input_audio0, vc_transform0, f0_file, f0method0, file_index1, file_index2,
              index_rate1, filter_radius0, resample_sr0, rms_mix_rate0, protect0]
    return inputs, file_index2, protect0, vc_output1, vc_output2, but0


def _single_tab_new(gr: Any, engine: VoiceEngine, spk_item: Any) -> tuple[Any, ...]:
    with gr.Row():
        with gr.Column():
            input_audio = gr.Audio(label="Upload audio", type="filepath")
            vc_transform0 = gr.Slider(minimum=-24, maximum=24, step=1, value=0, label=L_TRANSPOSE)
            f0method0 = gr.Radio(label="Pitch extraction algorithm", choices=F0_METHODS_NEW, value="rmvpe",
                                 interactive=True)
            file_index2 = gr.Dropdown(label=L_INDEX_AUTO, choices=engine.index_paths(), interactive=True,
                                      allow_custom_value=True)
        with gr.Column():
            index_rate1 = gr.Slider(minimum=0, maximum=1, label=L_INDEX_RATE, value=0.75, interactive=True)
            resample_sr0 = gr.Slider(minimum=0, maximum=48000, label=L_RESAMPLE, value=0, step=1, interactive=True)
            rms_mix_rate0 = gr.Slider(minimum=0, maximum=1, label=L_RMS, value=0.25, interactive=True)
            protect0 = gr.Slider(minimum=0, maximum=0.5, label=L_PROTECT, value=0.33, step=0.01, interactive=True)
    but0 = gr.Button("Convert", variant="primary")
    with gr.Row():
        vc_output1 = gr.Textbox(label="Output information")
        vc_output2 = gr.Audio(label="Export audio")
    inputs = [spk_item, input_audio, vc_transform0, f0method0, file_index2, index_rate1, resample_sr0,
              rms_mix_rate0, protect0]
    return inputs, file_index2, protect0, vc_output1, vc_output2, but0


def _new_signature(engine: VoiceEngine) -> Any:
    """The 9-input conversion, mapped onto RVC's vc_single."""
    def infer_convert(sid: float, audio_path: str | None, f0_up_key: float, f0_method: str, file_index: str | None,
                      index_rate: float, resample_sr: float, rms_mix_rate: float, protect: float) -> tuple[Any, Any]:
        return engine.vc_single(sid, audio_path, f0_up_key, None, f0_method, file_index, None, index_rate, 3,
                                resample_sr, rms_mix_rate, protect)
    return infer_convert


def _batch_tab(gr: Any, engine: VoiceEngine, spk_item: Any, refresh_button: Any) -> tuple[Any, Any]:
    gr.Markdown("Batch conversion. Enter the folder containing the audio files to be converted or upload "
                "multiple audio files. The converted audio will be output in the specified folder "
                "(default: 'opt').")
    with gr.Row():
        with gr.Column():
            vc_transform1 = gr.Number(label=L_TRANSPOSE, value=0)
            opt_input = gr.Textbox(label="Specify output folder:", value="opt")
            file_index3 = gr.Textbox(label=L_INDEX_PATH, value="", interactive=True)
            file_index4 = gr.Dropdown(label=L_INDEX_AUTO, choices=engine.index_paths(), interactive=True)
            f0method1 = gr.Radio(label=L_F0, choices=F0_METHODS_OLD, value="rmvpe", interactive=True)
            format1 = gr.Radio(label="Export file format", choices=["wav", "flac", "mp3", "m4a"], value="wav",
                               interactive=True)
            refresh_button.click(fn=lambda: engine.change_choices()[1], inputs=[], outputs=file_index4,
                                 api_name="infer_refresh_batch")
        with gr.Column():
            resample_sr1, rms_mix_rate1, protect1, filter_radius1, index_rate2 = _common_sliders(gr, 1, 1)
    with gr.Row():
        dir_input = gr.Textbox(label="Enter the path of the audio folder to be processed (copy it from the "
                                     "address bar of the file manager):",
                               placeholder="C:\\Users\\Desktop\\input_vocal_dir")
        inputs = gr.File(file_count="multiple", label="Multiple audio files can also be imported. If a folder "
                                                      "path exists, this input is ignored.")
    with gr.Row():
        but1 = gr.Button("Convert", variant="primary")
        vc_output3 = gr.Textbox(label="Output information")
        but1.click(engine.vc_multi,
                   [spk_item, dir_input, opt_input, inputs, vc_transform1, f0method1, file_index3, file_index4,
                    index_rate2, filter_radius1, resample_sr1, rms_mix_rate1, protect1, format1],
                   [vc_output3], api_name="infer_convert_batch")
    return file_index4, protect1


def main(argv: list[str] | None = None) -> int:
    """Run the RVC WebUI stand-in until SIGTERM/SIGINT."""
    stop = install_stop_handlers()
    ap = _common.common_parser(KIND, "RVC WebUI stand-in (Gradio 3.50, title 'RVC WebUI').")
    ap.add_argument("--layout", choices=["old", "new"], default="old",
                    help="old: infer-web.py's 12-input infer_convert (default); new: the 9-input upload layout")
    args = ap.parse_args(argv)
    _common.check_speed(ap, args.speed)
    configure_logging()
    data = _common.data_dir(args.data, KIND)
    prepare_environment(data)
    engine = VoiceEngine(data, args.speed)
    log.info("RVC WebUI stand-in: %s layout, voices in %s", args.layout, engine.weight_root)
    app = build_app(engine, args.layout)
    return serve(app, KIND, args.host, args.port, stop)


if __name__ == "__main__":
    sys.exit(main())
