"""Backlot job parameters as a Wan2GP settings dict, and the choice of a model for a task (pure functions)."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# quick_preview: small and few steps, so a preview costs seconds, not minutes (16-aligned, as Wan2GP snaps sizes)
PREVIEW = {"resolution": "480x272", "video_length": 17, "num_inference_steps": 6}
_RESOLUTION = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*s?\s*")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)B\b")  # "1.3B" in a model's name: its parameter count


class InvalidParams(ValueError):
    """The job's parameters cannot be turned into Wan2GP settings."""


def build_settings(task: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings dict for ``wangp_generate`` (``model_type`` only when the job names one).

    Only what the job sets is sent, so everything else keeps the model's own defaults; ``params["settings"]``
    (a dict of raw Wan2GP keys) is applied last, for the keys Backlot does not map.
    """
    settings: dict[str, Any] = dict(PREVIEW) if task == "quick_preview" else {}
    settings["prompt"] = prompt
    if "model_type" in params:
        settings["model_type"] = params["model_type"]  # even blank: Wan2GP itself says what is wrong
    if params.get("negative_prompt"):
        settings["negative_prompt"] = str(params["negative_prompt"])
    resolution = _resolution(params)
    if resolution:
        settings["resolution"] = resolution
    length = _length(params)
    if length is not None:
        settings["video_length"] = length
    steps = _first(params, "steps", "num_inference_steps")
    if steps is not None:
        settings["num_inference_steps"] = _int("steps", steps, 1)
    settings["seed"] = _int("seed", params.get("seed", -1), -1)
    guidance = _first(params, "guidance_scale", "guidance", "cfg")
    if guidance is not None:
        settings["guidance_scale"] = _number("guidance_scale", guidance)
    fps = _first(params, "fps", "force_fps")
    if fps is not None:
        settings["force_fps"] = _number("fps", fps)
    raw = params.get("settings")
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise InvalidParams("settings must be an object of Wan2GP setting names and values")
        settings.update(raw)
    return settings


def _first(params: Mapping[str, Any], *keys: str) -> Any:
    return next((params[k] for k in keys if params.get(k) is not None), None)


def _int(name: str, value: Any, low: int) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)  # "12" is fine, "12.5" is not
    except (TypeError, ValueError):
        raise InvalidParams(f"{name} must be a whole number, got {value!r}") from None
    if number < low:
        raise InvalidParams(f"{name} must be at least {low}, got {number}")
    return number


def _number(name: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParams(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise InvalidParams(f"{name} must be greater than 0, got {value!r}")
    return number


def _resolution(params: Mapping[str, Any]) -> str | None:
    width, height = params.get("width"), params.get("height")
    if width is not None or height is not None:
        if width is None or height is None:
            raise InvalidParams("give both width and height (or resolution like 832x480)")
        return f"{_int('width', width, 16)}x{_int('height', height, 16)}"
    if params.get("resolution") is None:
        return None
    match = _RESOLUTION.fullmatch(str(params["resolution"]))
    if not match:
        raise InvalidParams(f"resolution must look like 832x480, got {params['resolution']!r}")
    return f"{match[1]}x{match[2]}"


def _length(params: Mapping[str, Any]) -> int | str | None:
    """video_length: frames as a number, or seconds as "5s" (Wan2GP converts at the output frame rate)."""
    if params.get("frames") is not None:
        return _int("frames", params["frames"], 1)
    seconds = _first(params, "seconds", "duration")
    if seconds is not None:
        match = _SECONDS.fullmatch(str(seconds)) if not isinstance(seconds, bool) else None
        if not match or float(match[1]) <= 0:
            raise InvalidParams(f"seconds must be a positive number like 5 or '5s', got {seconds!r}")
        return f"{float(match[1]):g}s"
    if params.get("video_length") is not None:
        value = params["video_length"]
        return value if isinstance(value, str) else _int("video_length", value, 1)
    return None


# ----- choosing a model -----
def _values(record: Mapping[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if isinstance(value, str):
        return [value.lower()]
    return [str(v).lower() for v in value] if isinstance(value, Sequence) else []


def makes_video(record: Mapping[str, Any]) -> bool:
    """The model's main output is video (``outputs`` counts when ``main_output`` is absent)."""
    return "video" in (_values(record, "main_output") or _values(record, "outputs"))


def _flags(record: Mapping[str, Any], *path: str) -> Mapping[str, Any] | None:
    """A nested block of booleans (``media_inputs.image``, ``capabilities``), or None when absent."""
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, Mapping) else None


def takes_start_image(record: Mapping[str, Any]) -> bool:
    """The model animates a start image: ``capabilities.image_to_video``, else ``media_inputs.image.start``.

    Those are the real server's keys (``image_start`` is the *settings* field carrying the image); a record
    with neither block falls back to an ``image`` entry in ``inputs``.
    """
    capabilities = _flags(record, "capabilities")
    if capabilities is not None and "image_to_video" in capabilities:
        return bool(capabilities["image_to_video"])
    image = _flags(record, "media_inputs", "image")
    if image is not None and "start" in image:
        return bool(image["start"])
    return "image" in _values(record, "inputs")


def _extra_inputs(record: Mapping[str, Any]) -> int:
    """How many other media inputs a model can take (control video, audio, references...): fewer is simpler."""
    media = _flags(record, "media_inputs") or {}
    flags = [v for block in media.values() if isinstance(block, Mapping) for k, v in block.items()
             if k not in ("start", "end", "output")]
    return sum(1 for v in flags if v is True)


def candidates(records: Sequence[Mapping[str, Any]], task: str) -> list[Mapping[str, Any]]:
    """The video models fitting ``task``, simplest first (image_to_video: one taking a start image; else one that
    doesn't), so an automatic choice does not land on a model that also wants an audio track or a control video."""
    wants_image = task == "image_to_video"
    fits = [r for r in records if makes_video(r) and takes_start_image(r) == wants_image and r.get("model_type")]
    return sorted(fits, key=_extra_inputs)


def pick_model(records: Sequence[Mapping[str, Any]], task: str) -> str | None:
    """The first model fitting ``task`` whose weights are present, when the listing says (else the first fit)."""
    fits = candidates(records, task)
    present = [r for r in fits if available(r) is not False]
    chosen = (present or fits)[:1]
    return str(chosen[0]["model_type"]) if chosen else None


def available(record: Mapping[str, Any]) -> bool | None:
    """Whether the model's weights are on the server (its ``availability`` block), None when not said."""
    info = record.get("availability")
    return bool(info.get("available")) if isinstance(info, Mapping) and "available" in info else None


def suggest(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The model to tell a person to download: the simplest, then the smallest by the size in its name."""
    return min(records, key=lambda r: (_extra_inputs(r), _size(str(r.get("name") or ""))))


def _size(name: str) -> float:
    """A model's parameter count in billions from its name ("Wan2.1 Text2video 1.3B" -> 1.3), else infinity."""
    sizes = [float(m) for m in _SIZE.findall(name)]
    return min(sizes) if sizes else float("inf")


def describe(record: Mapping[str, Any]) -> str:
    """``Wan2.1 Text2video 1.3B (t2v_1.3B)``: a model as a person finds it in Wan2GP's model list."""
    name, model_type = str(record.get("name") or ""), str(record.get("model_type") or "")
    return f"{name} ({model_type})" if name and name != model_type else model_type
