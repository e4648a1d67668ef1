"""The tasks Backlot runs, as the CLI, the window and the socket API see them: one schema per task.

Each task lists the parameters the backends serving it read today (name, type, range, default, help)
and the input files it takes with their media type. Which backend kinds serve a task is configuration
(``task_backends``), so it is added where settings are known (``services.jobs.validate``); a ComfyUI
workflow adds its own parameters from its bindings (``BackendSpec.job_schema``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

ParamType = Literal["int", "float", "str", "bool", "choice", "object"]
Media = Literal["image", "audio", "video"]
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class SchemaError(ValueError):
    """A value does not fit its parameter; the message is one sentence for the user."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a job may set; ``aliases`` are other names the backends read for the same thing."""

    name: str
    type: ParamType
    help: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def coerce(self, value: Any, name: str | None = None) -> Any:
        """``value`` as this parameter's type (CLI strings included), inside its range; SchemaError if it is not.

        None, and blank text for anything but text, mean unset (a form's empty field): the backend's default.
        """
        name = name or self.name
        if value is None or (self.type != "str" and isinstance(value, str) and not value.strip()):
            return None
        out = _COERCE[self.type](self, name, value)
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            if self.min is not None and out < self.min:
                raise SchemaError(f"{name} must be at least {self.min:g}, got {out:g}")
            if self.max is not None and out > self.max:
                raise SchemaError(f"{name} must be at most {self.max:g}, got {out:g}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The wire form (``tasks.list``, ``backlot tasks --json``)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "help": self.help, "default": self.default,
                               "min": self.min, "max": self.max}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out


@dataclass(frozen=True)
class InputSpec:
    """One input file a task takes, in the order ``inputs`` are given."""

    name: str
    media: Media
    required: bool
    help: str

    def to_dict(self) -> dict[str, Any]:
        """The wire form."""
        return {"name": self.name, "media": self.media, "required": self.required, "help": self.help}


@dataclass(frozen=True)
class TaskSpec:
    """What one task is, what it takes and what it may be told."""

    name: str
    description: str
    params: tuple[ParamSpec, ...] = ()
    inputs: tuple[InputSpec, ...] = ()
    takes_prompt: bool = True  # False: a task or workflow that reads no prompt (a workflow's refuses one)
    workflow: str = ""  # the workflow whose bindings these are, where one is named
    needs_prompt: bool = False  # True: a blank prompt is refused (a workflow named decides for itself)

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called ``name`` (or one of its aliases)."""
        return next((p for p in self.params if name == p.name or name in p.aliases), None)

    def merged(self, other: TaskSpec) -> TaskSpec:
        """This schema plus what ``other`` adds (parameters by name, inputs by position; the stricter input wins)."""
        params = self.params + tuple(p for p in other.params if self.param(p.name) is None)
        inputs = list(self.inputs)
        for i, extra in enumerate(other.inputs):
            if i < len(inputs):
                inputs[i] = replace(inputs[i], required=inputs[i].required or extra.required)
            else:
                inputs.append(extra)
        # A workflow named decides what it does with a prompt: whether one is read (an upscaler may bind one), and
        # whether a blank one will do (its bindings may say it ignores the prompt); else both must read it.
        takes_prompt = other.takes_prompt if other.workflow else self.takes_prompt and other.takes_prompt
        needs_prompt = other.needs_prompt if other.workflow else self.needs_prompt or other.needs_prompt
        return replace(self, params=params, inputs=tuple(inputs), takes_prompt=takes_prompt, needs_prompt=needs_prompt,
                       workflow=self.workflow or other.workflow)

    def to_dict(self) -> dict[str, Any]:
        """The wire form."""
        return {"name": self.name, "description": self.description, "params": [p.to_dict() for p in self.params],
                "inputs": [i.to_dict() for i in self.inputs], "prompt": self.prompt_use}

    @property
    def prompt_use(self) -> str:
        """``needed``, ``optional`` or ``none``: what this task (with its workflow) does with a prompt."""
        return "none" if not self.takes_prompt else "needed" if self.needs_prompt else "optional"


def _int(spec: ParamSpec, name: str, value: Any) -> int:
    try:
        number = _float(spec, name, value)
    except SchemaError:
        number = math.nan
    if not number.is_integer():
        raise SchemaError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _float(spec: ParamSpec, name: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise SchemaError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SchemaError(f"{name} must be a finite number, got {value!r}")
    return number


def _str(spec: ParamSpec, name: str, value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise SchemaError(f"{name} must be text, got {value!r}")
    return str(value)


def _bool(spec: ParamSpec, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise SchemaError(f"{name} must be true or false, got {value!r}")


def _choice(spec: ParamSpec, name: str, value: Any) -> str:
    if str(value) not in spec.choices:
        raise SchemaError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
    return str(value)


def _object(spec: ParamSpec, name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, dict):
        raise SchemaError(f"{name} must be a JSON object like {{\"key\": 1}}, got {value!r}")
    return value


_COERCE: dict[str, Any] = {"int": _int, "float": _float, "str": _str, "bool": _bool, "choice": _choice,
                           "object": _object}


# ----- the parameters the backends read today, shared between tasks -----
SEED = ParamSpec("seed", "int", "random seed; -1 picks a new one each time", -1, -1)
WIDTH = ParamSpec("width", "int", "width in pixels", None, 16, 16384)
HEIGHT = ParamSpec("height", "int", "height in pixels", None, 16, 16384)
STEPS = ParamSpec("steps", "int", "sampling steps", None, 1, 1000, aliases=("num_inference_steps",))
CFG = ParamSpec("cfg", "float", "guidance scale (how closely to follow the prompt)", None, 0, 100,
                aliases=("guidance_scale", "guidance"))
NEGATIVE = ParamSpec("negative", "str", "what to keep out of the picture (ComfyUI)")
PREFIX = ParamSpec("prefix", "str", "output file name prefix on the ComfyUI server")
WORKFLOW = ParamSpec("workflow", "str", "ComfyUI workflow template to run (its bindings add parameters)")
CHECKPOINT = ParamSpec("checkpoint", "str", "ComfyUI checkpoint file (default: the template's, else the server's first)")
COMPLEXITY = ParamSpec("complexity", "choice", "high: prefer the backends made for full graphs (ComfyUI)", "normal",
                       choices=("normal", "high"))
IMAGE_PARAMS = (NEGATIVE, SEED, STEPS, CFG, WIDTH, HEIGHT, CHECKPOINT, PREFIX, WORKFLOW)
VIDEO_PARAMS = (
    WIDTH, HEIGHT,
    ParamSpec("resolution", "str", "WIDTHxHEIGHT, e.g. 832x480 (Wan2GP; or give width and height)"),
    ParamSpec("frames", "int", "number of frames", None, 1, 10000, aliases=("video_length",)),
    ParamSpec("seconds", "float", "length in seconds instead of frames (Wan2GP)", None, 0.1, 600, aliases=("duration",)),
    ParamSpec("fps", "float", "frames per second of the video", None, 1, 240, aliases=("force_fps",)),
    STEPS, CFG, SEED, NEGATIVE,
    ParamSpec("negative_prompt", "str", "what to keep out of the picture (Wan2GP)"),
    ParamSpec("model", "str", "ComfyUI diffusion model file (UNET)"),
    ParamSpec("model_type", "str", "Wan2GP model id, e.g. t2v (default: the configured or first fitting model)"),
    ParamSpec("settings", "object", "raw Wan2GP settings applied last, as a JSON object"),
    PREFIX, WORKFLOW, COMPLEXITY)
SOUND_PARAMS = (
    ParamSpec("duration", "float", "seconds of audio (snapped to what the app offers)", None, 0.1, 600),
    ParamSpec("guidance", "float", "guidance scale", None, 0, 100),
    SEED,
    ParamSpec("candidates", "int", "candidates generated, the best one kept", None, 1, 16),
    ParamSpec("model", "str", "AudioLDM model offered by the app"))
IMAGE_IN = InputSpec("image", "image", True, "the picture to work from")

_SPECS = (
    TaskSpec("quick_preview", "A fast, small preview to check framing and palette before a long render.",
             (*VIDEO_PARAMS, CHECKPOINT), needs_prompt=True),
    TaskSpec("text_to_video", "A video clip from a text prompt.", VIDEO_PARAMS, needs_prompt=True),
    TaskSpec("image_to_video", "A video clip animated from a start frame.", VIDEO_PARAMS,
             (InputSpec("image", "image", True, "the start frame"),)),
    TaskSpec("text_to_image", "A still image from a text prompt.",
             (*IMAGE_PARAMS, ParamSpec("batch", "int", "images made at once", None, 1, 64)), needs_prompt=True),
    TaskSpec("character_consistency", "Re-render a reference picture of a character in a new pose or scene.",
             (*(p for p in IMAGE_PARAMS if p not in (WIDTH, HEIGHT)),
              ParamSpec("strength", "float", "how far to move away from the reference (denoise)", None, 0, 1)),
             (InputSpec("image", "image", True, "the character's reference picture"),), needs_prompt=True),
    TaskSpec("image_edit", "A picture changed as the prompt says (Kontext, Qwen-Image-Edit, GPT-image, …).",
             (*(p for p in IMAGE_PARAMS if p not in (WIDTH, HEIGHT)),),
             (InputSpec("image", "image", True, "the picture to change"),), needs_prompt=True),
    TaskSpec("video_to_video", "A clip re-rendered as the prompt says (restyle, motion or pose transfer).",
             VIDEO_PARAMS, (InputSpec("video", "video", True, "the clip to work from"),), needs_prompt=True),
    TaskSpec("upscale", "A picture enlarged with an upscaling model.",
             (ParamSpec("upscaler", "str", "ComfyUI upscale model file (default: the server's first)"), PREFIX,
              WORKFLOW),
             (InputSpec("image", "image", True, "the picture to enlarge"),), takes_prompt=False),
    TaskSpec("voice_conversion", "A recorded line re-spoken in another voice.",
             (ParamSpec("voice", "str", "RVC voice model (default: the configured or first offered voice)"),
              ParamSpec("pitch", "int", "pitch shift in semitones", 0, -24, 24),
              ParamSpec("speaker_id", "int", "speaker within a multi-speaker voice", 0, 0, 10000),
              ParamSpec("f0_method", "str", "pitch extraction method offered by the server, e.g. rmvpe", "rmvpe")),
             (InputSpec("audio", "audio", True, "the recorded line"),), takes_prompt=False),
    TaskSpec("sound_effects", "A sound effect from a text description.", SOUND_PARAMS, needs_prompt=True),
    TaskSpec("ambient_audio", "An ambience or room tone from a text description.", SOUND_PARAMS, needs_prompt=True),
    TaskSpec("text", "Text from a language model (scripts, shot lists, descriptions).",
             (ParamSpec("model", "str", "model name (default: the server's first)"),
              ParamSpec("max_tokens", "int", "longest reply in tokens", None, 1, 1_000_000),
              ParamSpec("temperature", "float", "randomness from 0 to 2", None, 0, 2),
              ParamSpec("seed", "int", "seed for repeatable replies", None),
              ParamSpec("system", "str", "system message"),
              ParamSpec("stream", "bool", "stream the reply as it is written", True)), needs_prompt=True),
)
SCHEMA: dict[str, TaskSpec] = {s.name: s for s in _SPECS}
TASKS = tuple(SCHEMA)
# VRAM a task needs (GiB) until Backlot has learned it from finished jobs.
DEFAULT_VRAM_GIB = {"quick_preview": 6.0, "text_to_video": 12.0, "image_to_video": 14.0, "text_to_image": 6.0,
                    "character_consistency": 8.0, "image_edit": 12.0, "video_to_video": 14.0, "upscale": 3.0, "voice_conversion": 2.0, "sound_effects": 4.0,
                    "ambient_audio": 4.0, "text": 0.0}
