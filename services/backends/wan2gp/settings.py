"""Backlot job parameters as a Wan2GP settings dict, and the choice of a model for a task (pure functions)."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# quick_preview: small and few steps, so a preview costs seconds, not minutes (16-aligned, as Wan2GP snaps sizes)
PREVIEW = {"resolution": "480x272", "video_length": 17, "num_inference_steps": 6}
_RESOLUTION = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*s?\s*")


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


def takes_start_image(record: Mapping[str, Any]) -> bool:
    """The model animates a start image (``media_inputs.image.image_start``, else an ``image`` input)."""
    media = record.get("media_inputs")
    if isinstance(media, Mapping) and isinstance(media.get("image"), Mapping):
        return bool(media["image"].get("image_start"))
    return "image" in _values(record, "inputs")


def pick_model(records: Sequence[Mapping[str, Any]], task: str) -> str | None:
    """The first video model fitting ``task`` (image_to_video: one taking a start image; else one that doesn't).

    Models whose files are present come first (when the listing says), so a job does not start a download of
    many gigabytes just because an uninstalled model is listed earlier.
    """
    wants_image = task == "image_to_video"
    fits = [r for r in records if makes_video(r) and takes_start_image(r) == wants_image and r.get("model_type")]
    present = [r for r in fits if _available(r) is not False]
    chosen = (present or fits)[:1]
    return str(chosen[0]["model_type"]) if chosen else None


def _available(record: Mapping[str, Any]) -> bool | None:
    info = record.get("availability")
    return bool(info.get("available")) if isinstance(info, Mapping) and "available" in info else None
