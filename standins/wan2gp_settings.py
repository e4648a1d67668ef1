"""Wan2GP stand-in task settings: splitting a wangp_generate source into tasks and checking each task."""
from __future__ import annotations

import random
import re
import time
from typing import Any

from backlot.standins.wan2gp_models import Catalogue, Model


class TaskError(Exception):
    """A task failed; ``stage`` is validation (bad settings) or runtime (it failed while running)."""

    def __init__(self, message: str, stage: str = "runtime") -> None:
        super().__init__(message)
        self.stage = stage


def split_tasks(source: dict[str, Any] | list[dict[str, Any]]) -> list[Any]:
    """The task list of a settings dict, a task dict, a {"tasks": [...]} manifest or a task list."""
    if isinstance(source, dict) and "tasks" in source:
        tasks = source["tasks"]
    elif isinstance(source, list):
        tasks = source
    elif isinstance(source, dict):
        tasks = [source]
    else:
        raise TypeError("source must be a settings dict, task dict, manifest dict, or task list")
    if not isinstance(tasks, list) or not tasks:
        raise ValueError("source must contain at least one task. Nothing was submitted.")
    return list(tasks)


def task_settings(task: Any) -> tuple[dict[str, Any], Any]:
    """(settings, task id) of one task; a task may wrap its settings in "params" or "settings"."""
    if not isinstance(task, dict):
        raise TaskError("each task must be a settings or task object", "validation")
    for key in ("params", "settings"):
        if isinstance(task.get(key), dict):
            return dict(task[key]), task.get("id")
    return dict(task), task.get("id")


def _int(settings: dict[str, Any], key: str, low: int, high: int) -> int:
    """settings[key] as an int within [low, high] (bools refused), else TaskError(validation)."""
    value = settings.get(key)
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TaskError(f"{key} must be an integer, got {value!r}", "validation") from None
    if not low <= number <= high:
        raise TaskError(f"{key} must be between {low} and {high}, got {number}", "validation")
    return number


def _fps(value: Any, model: Model) -> float:
    """force_fps as a number; '' / 'auto' / 'control' / None mean the model's own rate."""
    try:
        fps = float(value)
    except (TypeError, ValueError):
        return float(model.fps)
    if not 1 <= fps <= 120:
        raise TaskError(f"force_fps must be between 1 and 120, got {value!r}", "validation")
    return fps


def _frames(value: Any, fps: float) -> int:
    """video_length in frames: an int, or seconds as "5s" at the output frame rate."""
    text = str(value).strip().lower()
    try:
        if isinstance(value, bool):
            raise ValueError
        frames = round(float(text[:-1]) * fps) if text.endswith("s") else int(float(text))
    except ValueError:
        raise TaskError(f"video_length must be a frame count or seconds like '5s', got {value!r}", "validation") from None
    if not 1 <= frames <= 2000:
        raise TaskError(f"video_length must give between 1 and 2000 frames, got {frames}", "validation")
    return frames


def prepare(settings: dict[str, Any], catalogue: Catalogue) -> tuple[Model, dict[str, Any]]:
    """Check and normalise one task's settings; TaskError(validation) or, for an unknown model, (runtime)."""
    model_type = settings.get("model_type", settings.get("base_model_type"))
    if not isinstance(model_type, str) or not model_type.strip():
        raise TaskError("model_type is required: every task needs a WanGP model_type (see wangp_list_models)",
                        "validation")
    model = catalogue.get(model_type)
    if model is None:
        # Wan2GP accepts the task and only fails when it tries to load the model.
        raise TaskError(f"Unknown model type '{model_type.strip()}': no model definition found", "runtime")
    merged = {**model.defaults, **{k: v for k, v in settings.items() if v is not None}, "model_type": model.model_type}
    merged["num_inference_steps"] = _int(merged, "num_inference_steps", 1, 1000)
    merged["batch_size"] = _int(merged, "batch_size", 1, 16)
    seed = _int(merged, "seed", -1, 2**32 - 1)
    merged["seed"] = random.randint(0, 999_999_999) if seed == -1 else seed
    if model.main_output == "audio":
        try:
            merged["duration_seconds"] = float(merged["duration_seconds"])
        except (TypeError, ValueError):
            raise TaskError(f"duration_seconds must be a number, got {merged['duration_seconds']!r}", "validation") from None
        if not 0 < merged["duration_seconds"] <= 600:
            raise TaskError("duration_seconds must be between 0 and 600", "validation")
        return model, merged
    match = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(merged.get("resolution", "")))
    if not match or not (16 <= int(match[1]) <= 4096 and 16 <= int(match[2]) <= 4096):
        raise TaskError(f"resolution must look like 832x480 (16 to 4096 per side), got {merged.get('resolution')!r}",
                        "validation")
    # H.264 in yuv420p needs even sides; Wan2GP itself snaps sizes to multiples of 16.
    merged["width"], merged["height"] = int(match[1]) // 2 * 2, int(match[2]) // 2 * 2
    merged["resolution"] = f"{merged['width']}x{merged['height']}"
    if model.main_output == "video":
        merged["fps"] = _fps(merged.get("force_fps"), model)
        merged["frames"] = _frames(merged.get("video_length"), merged["fps"])
    else:
        merged["frames"] = 8  # an image costs about as much as a few video frames
    return model, merged


def output_name(prompt: str, seed: int, ext: str) -> str:
    """Wan2GP's output naming: {date-time}_seed{seed}_{prompt}.ext (the prompt as a short slug)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", prompt).strip("-")[:50] or "no-prompt"
    return f"{time.strftime('%Y-%m-%d-%Hh%Mm%Ss')}_seed{seed}_{slug}{ext}"
