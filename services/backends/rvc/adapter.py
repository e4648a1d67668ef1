"""RVC WebUI adapter: load a voice, then ``infer_convert`` with the signature its ``/config`` declares."""
from __future__ import annotations

import asyncio
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backlot.services.backends.base import (
    FailureCode,
    JobRequest,
    JobStatus,
    OutputFile,
    SessionProvider,
    StatusCode,
    failed,
    unique_path,
)
from backlot.services.backends.gradio.app import (
    FILE_TYPES,
    CallResult,
    Component,
    Endpoint,
    GradioApp,
    GradioAppBackend,
    GradioError,
    GradioTimeouts,
    LocalFile,
    file_ref,
    progress,
)
from backlot.services.backends.rvc.probe import KIND, TASKS
from backlot.services.models import ServiceRecord

log = logging.getLogger(__name__)

F0_METHODS = frozenset({"pm", "harvest", "crepe", "rmvpe", "fcpe", "rmvpe_gpu"})
STEPS = 3  # load voice, upload, convert


@dataclass(frozen=True)
class ConvertLayout:
    """Where ``infer_convert``'s inputs sit, read from /config (old 12-input or new 9-input layout)."""

    endpoint: Endpoint
    audio: int
    pitch: int
    f0_method: int | None
    speaker: int | None

    @property
    def audio_is_path(self) -> bool:
        """True for the old layout: the audio is a path on the RVC machine typed into a Textbox."""
        return self.endpoint.inputs[self.audio].type not in FILE_TYPES

    @classmethod
    def read(cls, ep: Endpoint, service: str) -> ConvertLayout:
        """Find the inputs by component type and label; GradioError when this is not an RVC layout."""
        audio = ep.find(lambda c: c.type == "audio")
        if audio is None:
            audio = ep.find(lambda c: c.type == "textbox" and c.mentions("audio"))
        pitch = ep.find(lambda c: c.type in ("number", "slider") and c.mentions("transpose", "semitone", "pitch"))
        f0 = ep.find(lambda c: c.type in ("radio", "dropdown") and bool(F0_METHODS & set(map(str, c.choices))))
        speaker = ep.find(lambda c: c.mentions("speaker", "singer"))
        if audio is None or pitch is None:
            raise GradioError(f"{service}: infer_convert has inputs this adapter does not recognise "
                              f"({', '.join(c.type for c in ep.inputs)})", FailureCode.BAD_RESPONSE)
        return cls(ep, audio, pitch, f0, speaker)

    @property
    def f0_choices(self) -> list[str]:
        """Pitch extraction methods offered."""
        return [str(c) for c in self.endpoint.inputs[self.f0_method].choices] if self.f0_method is not None else []


def _error_line(info: str) -> str:
    """The line that names the error in RVC's info text (a traceback's exception line, else the first line)."""
    lines = [ln for ln in info.strip().splitlines() if ln.strip()]
    if not lines:
        return "it returned no audio and no message"
    if lines[0].startswith("Traceback"):
        # The exception line of the last traceback: the first unindented line after its frames.
        last = max(i for i, ln in enumerate(lines) if ln.startswith("Traceback"))
        return next((ln for ln in lines[last + 1:] if not ln.startswith((" ", "\t"))), lines[-1])
    return lines[0]


def _semitones(value: Any, slider: Component) -> int:
    try:
        pitch = float(value)
    except (TypeError, ValueError):
        pitch = math.nan
    if not math.isfinite(pitch) or isinstance(value, bool):
        raise GradioError(f"pitch must be a number of semitones, not {value!r}", FailureCode.VALIDATION)
    low, high = slider.number("minimum"), slider.number("maximum")
    if slider.type == "slider" and low is not None and high is not None and not low <= pitch <= high:
        raise GradioError(f"pitch {pitch:g} is outside what this RVC allows ({low:g} to {high:g} semitones)",
                          FailureCode.VALIDATION)
    return round(pitch)


def _speaker(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number.is_integer() or number < 0:
        raise GradioError(f"speaker_id must be a whole number, not {value!r}", FailureCode.VALIDATION)
    return int(number)


class RvcBackend(GradioAppBackend):
    """Voice conversion on an RVC WebUI (Gradio 3.x REST; a newer Gradio goes through gradio_client)."""

    kind = KIND
    display_name = "RVC WebUI"

    def __init__(self, record: ServiceRecord, sessions: SessionProvider, *, default_voice: str | None = None,
                 timeouts: GradioTimeouts | None = None) -> None:
        self.record = record
        self.default_voice = default_voice
        self.app = GradioApp(record.base_url, sessions, service=record.id, timeouts=timeouts)
        # RVC holds one voice for its whole process: a load and the conversion after it must not interleave.
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this backend can run."""
        return tuple(TASKS)

    async def probe(self) -> dict[str, Any]:
        """The voices, pitch methods and layout this RVC offers."""
        layout = ConvertLayout.read(await self.app.endpoint("infer_convert"), self.record.id)
        return {"voices": await self._voices(refresh=True), "f0_methods": layout.f0_choices,
                "layout": "old" if layout.audio_is_path else "new", "protocol": self.app.protocol}

    async def _voices(self, refresh: bool = False) -> list[str]:
        """Voice names from the voice dropdown; with ``refresh``, asked fresh from ``infer_refresh``."""
        change = await self.app.endpoint("infer_change_voice")
        if not change.inputs:
            return []
        dropdown = change.inputs[0]
        refresher = next((e for e in await self.app.endpoints() if e.api_name == "infer_refresh"), None)
        if refresh and refresher is not None:
            # The dropdown in /config is as old as the page; infer_refresh re-reads assets/weights.
            result = await self.app.run(refresher, refresher.defaults(), Path("."))  # no file outputs
            for comp, update in zip(refresher.outputs, result.values):
                if comp.id == dropdown.id and isinstance(update, dict) and isinstance(update.get("choices"), list):
                    return [str(c) for c in Component(comp.id, comp.type, comp.label, update).choices]
        return [str(c) for c in dropdown.choices]

    async def _pick_voice(self, job: JobRequest) -> str:
        wanted = job.params.get("voice") or self.default_voice
        voices = await self._voices()
        if wanted and wanted not in voices:
            voices = await self._voices(refresh=True)  # it may have been added since the page was built
        if wanted:
            if wanted not in voices:
                offered = ", ".join(voices) or "none"
                raise GradioError(f"voice {wanted!r} is not offered by {self.record.id} (it offers: {offered})",
                                  FailureCode.VALIDATION)
            return str(wanted)
        if not voices:
            raise GradioError(f"{self.record.id} offers no voices (its assets/weights folder is empty)",
                              FailureCode.RUNTIME)
        return voices[0]

    async def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Load the voice, upload the audio, convert; yield RUNNING, three PROGRESS steps, FINISHED or FAILED."""
        source = job.inputs[0] if job.inputs else None
        if source is None or not source.is_file() or not os.access(source, os.R_OK):
            why = "no input audio was given" if source is None else f"the input audio {source} cannot be read"
            yield failed(f"voice conversion needs a readable audio file: {why}", FailureCode.VALIDATION)
            return
        ref = uuid.uuid4().hex[:11]
        yield JobStatus(StatusCode.RUNNING, remote_ref=ref, message=f"sending {source.name} to {self.record.id}")
        try:
            async with self._lock:
                async for status in self._convert(job, source, ref):
                    yield status
        except GradioError as err:
            yield err.status()
        except Exception as err:  # an adapter bug must end this job, not the job manager's loop
            log.exception("RVC job %s failed inside the adapter", job.id)
            yield failed(f"internal error in the RVC adapter: {type(err).__name__}: {err}", FailureCode.RUNTIME)

    async def _convert(self, job: JobRequest, source: Path, ref: str) -> AsyncIterator[JobStatus]:
        layout = ConvertLayout.read(await self.app.endpoint("infer_convert"), self.record.id)
        change = await self.app.endpoint("infer_change_voice")
        convert = layout.endpoint
        voice = await self._pick_voice(job)
        pitch = _semitones(job.params.get("pitch", 0), convert.inputs[layout.pitch])
        method = self._f0_method(job, layout)
        data = convert.defaults()

        yield progress(1, STEPS, f"loading voice {voice}", ref)
        loaded = await self._load_voice(change, voice, job.output_dir)
        # Do what the browser does: the voice's index path and protect values flow into the convert inputs.
        slots = {c.id: i for i, c in enumerate(convert.inputs)}
        for comp, update in zip(change.outputs, loaded.values):
            if comp.id in slots:
                data[slots[comp.id]] = update.get("value", data[slots[comp.id]]) if isinstance(update, dict) \
                    else update
        if layout.speaker is not None:
            data[layout.speaker] = _speaker(job.params.get("speaker_id", 0))
        data[layout.pitch] = pitch
        if layout.f0_method is not None:
            data[layout.f0_method] = method

        yield progress(2, STEPS, f"uploading {source.name}", ref)
        if not self.app.legacy:
            if layout.audio_is_path:
                raise GradioError(f"{self.record.id}: this RVC wants a path on its own disk, which only works "
                                  "through Gradio 3's /upload", FailureCode.BAD_RESPONSE)
            data[layout.audio] = LocalFile(source)
        else:
            server_path = await self.app.upload(source)
            data[layout.audio] = server_path if layout.audio_is_path else file_ref(server_path)

        sign = f"{pitch:+d}" if pitch else "0"
        yield progress(3, STEPS, f"converting with {voice}, pitch {sign} semitones, {method}", ref)
        result: CallResult | None = None
        async for item in self.app.call(convert, data, job.output_dir, ref=ref):
            if isinstance(item, CallResult):
                result = item
            else:
                yield JobStatus(item.code, item.fraction, 3, STEPS, "steps", item.message or "converting",
                                item.queue_rank, item.eta, ref)
        if result is None:
            return  # call() ended on a terminal status (dropped from the queue), already passed on
        yield self._finish(result, source, voice, pitch, method, job, ref)

    async def _load_voice(self, change: Endpoint, voice: str, folder: Path) -> CallResult:
        data = change.defaults()
        data[0] = voice
        try:
            return await self.app.run(change, data, folder)
        except GradioError as err:
            if err.failure is FailureCode.RUNTIME:
                raise GradioError(f"{self.record.id} could not load voice {voice!r}: {err}", FailureCode.RUNTIME,
                                  **err.detail) from err
            raise

    def _f0_method(self, job: JobRequest, layout: ConvertLayout) -> str:
        choices = layout.f0_choices
        wanted = job.params.get("f0_method")
        if wanted:
            if choices and wanted not in choices:
                raise GradioError(f"pitch method {wanted!r} is not offered (choose one of {', '.join(choices)})",
                                  FailureCode.VALIDATION)
            return str(wanted)
        return "rmvpe" if "rmvpe" in choices or not choices else choices[0]

    def _finish(self, result: CallResult, source: Path, voice: str, pitch: int, method: str, job: JobRequest,
                ref: str) -> JobStatus:
        info = str(result.values[0] or "") if result.values and isinstance(result.values[0], str) else ""
        files = result.files()
        if not files:
            return failed(f"RVC could not convert {source.name}: {_error_line(info)}", FailureCode.RUNTIME,
                          info=info)
        audio = files[0]
        named = unique_path(job.output_dir, f"{source.stem}_{Path(voice).stem}{audio.suffix or '.wav'}")
        audio = audio.rename(named)
        log.info("RVC converted %s with %s (pitch %s) into %s", source.name, voice, pitch, audio)
        return JobStatus(StatusCode.SUCCEEDED, fraction=1.0, step=STEPS, total=STEPS, unit="steps",
                         message=info.strip() or "converted", remote_ref=ref, outputs=(OutputFile.of(audio),),
                         detail={"voice": voice, "pitch": pitch, "f0_method": method})
