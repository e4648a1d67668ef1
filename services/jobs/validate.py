"""A job request checked against the task schema before anything is queued: parameters, then input files.

Parameters are coerced here, in one place (the CLI's ``--param`` values arrive as text); the backend kinds
serving the task (``task_backends``) may add parameters of their own (a ComfyUI workflow's bindings).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backlot.services.backends import registry
from backlot.services.config import Settings
from backlot.services.errors import BacklotError
from backlot.services.tasks import SCHEMA, TASKS, InputSpec, SchemaError, TaskSpec


class InvalidJob(BacklotError):
    """A job request that does not fit its task's schema; the message is one sentence for the user."""


@dataclass(frozen=True)
class ValidJob:
    """A request that passed: its parameters coerced to their types and its input files."""

    params: dict[str, Any]
    inputs: list[Path]


def schema_json(settings: Settings) -> dict[str, Any]:
    """Every task's schema with the backend kinds serving it, first choice first (``tasks.list``, ``backlot tasks``)."""
    return {"tasks": [{**spec.to_dict(), "backends": list(settings.task_backends.get(name, []))}
                      for name, spec in SCHEMA.items()]}


def task_spec(task: str) -> TaskSpec:
    """The schema of a known task; InvalidJob naming the tasks otherwise."""
    spec = SCHEMA.get(task)
    if spec is None:
        raise InvalidJob(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return spec


def job_schema(settings: Settings, task: str, params: Mapping[str, Any]) -> TaskSpec:
    """The task's schema plus what the kinds serving it add for these params (blocking: may read templates)."""
    spec = task_spec(task)
    options = settings.backend_options() if params.get("workflow") else {}
    for kind in settings.task_backends.get(task, []):
        backend = registry.spec_for(kind)
        extra = backend.job_schema(task, params, options) if backend is not None and backend.job_schema else None
        if extra is not None:
            spec = spec.merged(extra)
    return spec


def check_params(settings: Settings, task: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], TaskSpec]:
    """The params coerced by the schema, and the schema that holds for them (blocking: may read templates).

    The names the task knows are coerced first, so a kind's ``job_schema`` sees typed values (``workflow``).
    """
    base = task_spec(task)
    out: dict[str, Any] = {}
    for name, value in params.items():
        param = base.param(name)
        if param is not None:
            out[name] = _coerce(param.coerce, name, value)
    try:
        spec = job_schema(settings, task, out)
    except SchemaError as err:
        raise InvalidJob(str(err)) from err
    for name, value in params.items():
        if name in out:
            continue
        param = spec.param(name)
        if param is None:
            names = ", ".join(sorted(p.name for p in spec.params))
            raise InvalidJob(f"{task} has no parameter {name!r} (it takes {names})")
        out[name] = _coerce(param.coerce, name, value)
    return {k: v for k, v in out.items() if v is not None}, spec  # unset is absent: the backend's default


def check_prompt(spec: TaskSpec, prompt: str) -> None:
    """A blank prompt where one is needed is refused; so is a prompt for a workflow that reads none.

    A task that reads no prompt (voice conversion) ignores one: clients that always send their prompt box
    keep working. A workflow named for the job is stricter: a prompt it would ignore is refused.
    """
    if not prompt.strip():
        if spec.takes_prompt and spec.needs_prompt:
            raise InvalidJob(f"{spec.name} needs a prompt (what to make), and the prompt is empty")
        return
    if spec.takes_prompt or not spec.workflow:
        return
    name = spec.workflow
    raise InvalidJob(f"{name} has no input bound to the prompt, so the prompt would be ignored; leave the prompt "
                     f"empty, or bind one in {name}.bindings.json (\"prompt\": [[\"NODE_ID\", \"text\"]]; "
                     "\"ignores_prompt\": true accepts prompts it does not use)")


def _coerce(coerce: Any, name: str, value: Any) -> Any:
    try:
        return coerce(value, name)
    except SchemaError as err:
        raise InvalidJob(str(err)) from err


def check_inputs(spec: TaskSpec, inputs: Iterable[str | Path]) -> list[Path]:
    """Input files in the schema's order: present, readable files of the right media type (blocking: sniffs)."""
    files = [Path(p).expanduser() for p in inputs]
    if len(files) > len(spec.inputs):
        takes = ", ".join(f"{i.name} ({i.media})" for i in spec.inputs) or "no input file"
        raise InvalidJob(f"{spec.name} takes {takes}, but {len(files)} file(s) were given")
    for i, want in enumerate(spec.inputs):
        if i < len(files):
            _check_file(files[i], want)
        elif want.required:
            raise InvalidJob(f"{spec.name} needs an input {want.media} ({want.help})")
    return files


def _check_file(path: Path, want: InputSpec) -> None:
    if path.is_dir():
        raise InvalidJob(f"input {path} is a folder, not a file")
    if not path.exists():
        raise InvalidJob(f"input file {path} does not exist")
    if not path.is_file():
        raise InvalidJob(f"input {path} is not a regular file")
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as err:
        raise InvalidJob(f"input file {path} cannot be read: {err.strerror or err}") from err
    if not _SNIFF[want.media](path):
        raise InvalidJob(f"{path.name} is not {'an' if want.media[0] in 'aeiou' else 'a'} {want.media} file")


def _is_image(path: Path) -> bool:
    from PIL import Image  # imported in the worker thread, never on the loop

    try:
        with Image.open(path) as image:
            return bool(image.format)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _has_stream(path: Path, kind: str) -> bool:
    import av  # PyAV loads FFmpeg: only ever in the worker thread

    try:
        with av.open(str(path)) as container:
            if container.format.name == "tty":  # FFmpeg's ANSI-art demuxer takes any text file for a video
                return False
            return bool(container.streams.audio if kind == "audio" else container.streams.video)
    except (av.FFmpegError, OSError, ValueError):
        return False


def _is_audio(path: Path) -> bool:
    return _has_stream(path, "audio")


def _is_video(path: Path) -> bool:
    return _has_stream(path, "video")


_SNIFF: dict[str, Callable[[Path], bool]] = {"image": _is_image, "audio": _is_audio, "video": _is_video}


async def validate_job(settings: Settings, task: str, params: Mapping[str, Any],
                       inputs: Iterable[str | Path], prompt: str = "") -> ValidJob:
    """Parameters, prompt and inputs checked together, off the loop; InvalidJob with one sentence when something is wrong."""
    files = list(inputs)

    def check() -> ValidJob:
        coerced, spec = check_params(settings, task, params)
        check_prompt(spec, prompt)
        return ValidJob(coerced, check_inputs(spec, files))

    return await asyncio.to_thread(check)
