"""The Wan2GP stand-in's model catalogue: a handful of plausible models with Wan2GP-shaped records."""
from __future__ import annotations

import copy
import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any

# Cost of one denoising step, in seconds at --speed 1, for the reference job (81 frames at 832x480,
# model cost 1.0); other jobs scale with frames x pixels x model cost (see Model.step_seconds).
REFERENCE_STEP_SECONDS = 0.5
REFERENCE_WORK = 81 * 832 * 480
STEP_OVERHEAD_SECONDS = 0.01


IMAGE_INPUTS = ("start", "end", "reference", "single_reference", "multiple_references", "background",
                "injected_frames", "control", "mask")
VIDEO_INPUTS = ("continue", "last", "control", "mask")
AUDIO_INPUTS = ("prompt", "output")


def _media(image: tuple[str, ...] = (), video: tuple[str, ...] = (), audio: tuple[str, ...] = ()) -> dict[str, Any]:
    """The media_inputs block, with the real server's keys (``image.start``, not the settings name image_start)."""
    return {"image": {key: key in image for key in IMAGE_INPUTS}, "video": {key: key in video for key in VIDEO_INPUTS},
            "audio": {key: key in audio for key in AUDIO_INPUTS}}


def _capabilities(main: str, outputs: list[str], inputs: tuple[str, ...], media: dict[str, Any]) -> dict[str, bool]:
    """The capabilities block, derived as Wan2GP's models/model_metadata.py infers it."""
    image, video, audio = media["image"], media["video"], media["audio"]
    return {
        "text_to_video": main == "video" and "text" in inputs, "image_to_video": main == "video" and image["start"],
        "video_to_video": main == "video" and (video["continue"] or video["control"]),
        "text_to_image": main == "image" and "text" in inputs,
        "image_to_image": main == "image" and (image["start"] or image["reference"] or image["control"]),
        "text_to_audio": main == "audio" and "text" in inputs, "audio_to_audio": main == "audio" and audio["prompt"],
        "audio_to_video": main == "video" and audio["prompt"], "audio_output": "audio" in outputs,
        "inpainting": image["mask"] or video["mask"], "outpainting": False, "reference_images": image["reference"],
        "background_image": image["background"], "injected_frames": image["injected_frames"],
        "control_image": image["control"], "control_video": video["control"], "video_continuation": video["continue"],
        "sliding_window": main == "video", "lora": main != "audio",
    }


@dataclass
class Model:
    """One catalogue entry: the public record fields plus what the simulated generator needs."""

    model_type: str
    name: str
    family: str
    family_label: str
    main_output: str  # video | image | audio
    description: str
    inputs: tuple[str, ...] = ("text",)
    media: dict[str, tuple[str, ...]] = field(default_factory=dict)  # image/video/audio -> the inputs it takes
    cost: float = 1.0  # relative work per step
    load_seconds: float = 0.3
    installed: bool = True
    size: str = ""
    fps: int = 16
    defaults: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The compact metadata record wangp_list_models returns."""
        outputs = [self.main_output]
        media = _media(**self.media)
        return {
            "model_type": self.model_type, "family": self.family, "family_label": self.family_label,
            "base_model_type": self.model_type, "finetune": False, "main_output": [self.main_output],
            "outputs": outputs, "inputs": list(self.inputs), "media_inputs": media,
            "capabilities": _capabilities(self.main_output, outputs, self.inputs, media), "name": self.name,
        }

    def work(self, settings: dict[str, Any]) -> float:
        """Work units of one step for the given normalised settings."""
        if self.main_output == "audio":
            return float(settings["duration_seconds"]) * 200_000
        return float(settings["frames"]) * settings["width"] * settings["height"]

    def step_seconds(self, settings: dict[str, Any]) -> float:
        """Simulated seconds per denoising step at --speed 1."""
        return STEP_OVERHEAD_SECONDS + REFERENCE_STEP_SECONDS * self.cost * self.work(settings) / REFERENCE_WORK


_VIDEO_DEFAULTS = {"prompt": "", "negative_prompt": "", "resolution": "832x480", "video_length": 81,
                   "num_inference_steps": 30, "guidance_scale": 5.0, "flow_shift": 5.0, "seed": -1,
                   "force_fps": "", "batch_size": 1, "sliding_window_size": 81, "activated_loras": [],
                   "loras_multipliers": ""}

CATALOGUE: tuple[Model, ...] = (
    Model("t2v_1.3B", "Wan2.1 Text2video 1.3B", "wan", "Wan2.1", "video",
          "Small and fast text-to-video model, 480p.", size="1.3B", cost=1.0,
          defaults={**_VIDEO_DEFAULTS}),
    Model("t2v", "Wan2.1 Text2video 14B", "wan", "Wan2.1", "video",
          "The original Wan text-to-video model, 480p or 720p.", size="14B", cost=3.0, load_seconds=0.8,
          installed=False, defaults={**_VIDEO_DEFAULTS, "resolution": "1280x720"}),
    Model("i2v", "Wan2.1 Image2video 480p 14B", "wan", "Wan2.1", "video",
          "Animates a start image (and optionally an end image) following a prompt.", size="14B", cost=3.0,
          load_seconds=0.8, inputs=("text", "image"), media={"image": ("start", "end")},
          defaults={**_VIDEO_DEFAULTS, "image_prompt_type": "S"}),
    Model("flux", "Flux 1 Dev 12B", "flux", "Flux 1", "image",
          "Text-to-image model with embedded guidance.", size="12B", cost=1.5, load_seconds=0.5,
          defaults={"prompt": "", "resolution": "1024x1024", "num_inference_steps": 28, "embedded_guidance_scale": 2.5,
                    "seed": -1, "batch_size": 1, "image_mode": 1, "activated_loras": [], "loras_multipliers": ""}),
    Model("ace_step_v1", "ACE-Step v1 3.5B", "ace_step", "ACE-Step", "audio",
          "Song generation from a style prompt and lyrics.", size="3.5B", cost=1.0, inputs=("text", "lyrics"),
          media={"audio": ("output",)},
          defaults={"prompt": "", "lyrics": "", "duration_seconds": 20, "num_inference_steps": 60,
                    "guidance_scale": 7.0, "seed": -1, "batch_size": 1}),
)

_SETTING_DOCS = {
    "prompt": ("string", "What to generate."), "negative_prompt": ("string", "What to avoid."),
    "resolution": ("string", "WIDTHxHEIGHT, e.g. 832x480."),
    "video_length": ("integer|string", "Frames, or seconds as '5s' (at force_fps or the model fps)."),
    "num_inference_steps": ("integer", "Denoising steps."), "guidance_scale": ("number", "CFG scale."),
    "embedded_guidance_scale": ("number", "Distilled guidance."), "flow_shift": ("number", "Scheduler shift."),
    "seed": ("integer", "-1 picks a random seed."), "force_fps": ("string|number", "Output fps; '' = model fps."),
    "batch_size": ("integer", "Outputs per task."), "duration_seconds": ("number", "Audio length in seconds."),
    "lyrics": ("string", "Song lyrics."), "image_start": ("string", "Gallery id of the start image."),
    "image_end": ("string", "Gallery id of the end image."), "image_prompt_type": ("string", "S = start image."),
    "sliding_window_size": ("integer", "Frames per window for long videos."),
    "activated_loras": ("array", "LoRA identifiers."), "loras_multipliers": ("string", "LoRA weights."),
    "image_mode": ("integer", "1 = image output."),
}


class Catalogue:
    """Thread-safe view of the model catalogue; availability changes once a 'missing' model is downloaded."""

    def __init__(self, models: tuple[Model, ...] = CATALOGUE, weights: set[str] | None = None,
                 offline: bool = False) -> None:
        """``weights``: the models whose files are on disk (None: the catalogue's own); ``offline``: downloads fail."""
        self._models = {m.model_type: copy.deepcopy(m) for m in models}
        if weights is not None:
            unknown = weights - set(self._models)
            if unknown:
                raise ValueError(f"unknown model(s) in --weights: {', '.join(sorted(unknown))}")
            for model in self._models.values():
                model.installed = model.model_type in weights
        self.offline = offline
        self._lock = threading.Lock()

    def get(self, model_type: str) -> Model | None:
        """The model, or None when the type is unknown."""
        return self._models.get(str(model_type or "").strip())

    def mark_installed(self, model_type: str) -> None:
        """Record that a model's files are now present (after its first simulated download)."""
        with self._lock:
            self._models[model_type].installed = True

    def availability(self, model_type: str) -> dict[str, Any]:
        """Local file availability of one model."""
        model = self.get(model_type)
        if model is None:
            raise ValueError(f"Unknown model_type: {model_type}")  # the real server's words, no KeyError quotes
        with self._lock:
            installed = model.installed
        return {"model_type": model.model_type, "status": "available" if installed else "missing",
                "status_code": 2 if installed else 0, "indicator": "blue_square" if installed else "black_square",
                "available": installed}

    def select(self, *, query: str | None = None, **filters: str | None) -> list[Model]:
        """Models matching case-insensitive * and ? globs per field, and a substring query."""
        out = []
        for model in self._models.values():
            rec = model.record()
            ok = True
            for key, pattern in filters.items():
                if pattern is None:
                    continue
                value = rec.get(key)
                values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
                if not any(fnmatch.fnmatchcase(v.casefold(), pattern.casefold()) for v in values):
                    ok = False
            if ok and query:
                haystack = " ".join([model.model_type, model.name, model.family, model.family_label,
                                     model.description]).casefold()
                ok = all(word in haystack for word in query.casefold().split())
            if ok:
                out.append(model)
        return out

    def records(self, models: list[Model], include_availability: bool = False) -> list[dict[str, Any]]:
        """Compact records, optionally with an availability block."""
        recs = []
        for model in models:
            rec = model.record()
            if include_availability:
                rec["availability"] = self.availability(model.model_type)
            recs.append(rec)
        return recs

    def definition(self, model_type: str) -> dict[str, Any] | None:
        """The full model definition (architecture, files, frame limits), or None if unknown."""
        model = self.get(model_type)
        if model is None:
            return None
        return {**model.record(), "description": model.description, "architecture": model.model_type,
                "size": model.size, "URLs": [f"ckpts/{model.model_type}_{model.size.lower()}_bf16.safetensors"],
                **self._frame_limits(model)}

    def schema(self, model_type: str) -> dict[str, Any] | None:
        """A compact capability and usage summary: metadata plus typed setting declarations."""
        model = self.get(model_type)
        if model is None:
            return None
        settings = {key: {"type": _SETTING_DOCS.get(key, ("any", ""))[0], "default": value,
                          "description": _SETTING_DOCS.get(key, ("any", ""))[1]}
                    for key, value in self.default_settings(model_type).items() if key != "model_type"}
        return {"model_type": model.model_type,
                "metadata": {**model.record(), "description": model.description, **self._frame_limits(model)},
                "settings": settings, "required": ["model_type"]}

    def default_settings(self, model_type: str) -> dict[str, Any]:
        """Pristine generation defaults for a model."""
        model = self.get(model_type)
        if model is None:
            raise KeyError(f"Unknown model_type: {model_type}")
        return {"model_type": model.model_type, **copy.deepcopy(model.defaults)}

    @staticmethod
    def _frame_limits(model: Model) -> dict[str, Any]:
        if model.main_output != "video":
            return {}
        return {"fps": model.fps, "frames_minimum": 5, "frames_steps": 4, "frames_maximum": 737}


# Deepy (Wan2GP's assistant) generation templates: tool id -> (label, [(template, model_type)]).
DEEPY_TEMPLATES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "gen_video": ("Generate Video", [("wan_t2v_1.3B", "t2v_1.3B"), ("wan_t2v_14B", "t2v")]),
    "gen_video_with_refs": ("Generate Video From Images", [("wan_i2v_480p", "i2v")]),
    "gen_image": ("Generate Image", [("flux_dev", "flux")]),
    "gen_song": ("Generate Song", [("ace_step_v1", "ace_step_v1")]),
}
