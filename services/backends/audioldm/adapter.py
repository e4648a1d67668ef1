"""AudioLDM / AudioLDM2 adapter: text-to-audio found in ``/config`` by its inputs; the WAV is demuxed from the MP4."""
from __future__ import annotations

import asyncio
import logging
import math
import secrets
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backlot.services.backends.audioldm.probe import KIND, TASKS
from backlot.services.backends.base import (
    CHOSEN,
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
    CallResult,
    Component,
    Endpoint,
    GradioApp,
    GradioAppBackend,
    GradioError,
    GradioTimeouts,
    progress,
)
from backlot.services.models import ServiceRecord

log = logging.getLogger(__name__)

STEPS = 2  # generate, extract the audio
SEED_MAX = 2**31 - 1  # the app seeds NumPy and torch with it: any int32 works for both


def is_text_to_audio(ep: Endpoint) -> bool:
    """A textbox plus a "Duration" slider and some of guidance / seed / candidates: AudioLDM's text2audio."""
    if not any(c.type == "textbox" for c in ep.inputs):
        return False
    if not any(c.type == "slider" and c.mentions("duration") for c in ep.inputs):
        return False
    extras = sum(1 for c in ep.inputs if c.mentions("guidance", "candidate") or c.type == "number")
    return extras >= 2


@dataclass(frozen=True)
class Slots:
    """Where each parameter goes among the endpoint's inputs."""

    text: int
    duration: int
    guidance: int | None
    seed: int | None
    candidates: int | None
    model: int | None

    @classmethod
    def read(cls, ep: Endpoint) -> Slots:
        """Match inputs by type and label (AudioLDM's seed box has no "seed" in its label: it is the Number)."""
        text = ep.find(lambda c: c.type == "textbox")
        duration = ep.find(lambda c: c.type == "slider" and c.mentions("duration"))
        assert text is not None and duration is not None  # is_text_to_audio() chose this endpoint
        return cls(text, duration, ep.find(lambda c: c.mentions("guidance")),
                   ep.find(lambda c: c.type == "number" or c.mentions("seed")),
                   ep.find(lambda c: c.mentions("candidate")),
                   ep.find(lambda c: c.type == "dropdown"))


def snap(value: float, comp: Component) -> float:
    """The nearest value the slider offers: inside its range, on its step grid."""
    low, high, step = comp.number("minimum"), comp.number("maximum"), comp.number("step")
    if low is not None:
        value = max(low, value)
    if high is not None:
        value = min(high, value)
    if step:
        base = low or 0.0
        value = base + round((value - base) / step) * step
        if high is not None and value > high + 1e-9:
            value -= step
    return round(value, 6)


def _number(params: dict[str, Any], key: str) -> float | None:
    value = params.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or isinstance(value, bool):
        raise GradioError(f"{key} must be a number, not {value!r}", FailureCode.VALIDATION)
    return number


def plan(ep: Endpoint, prompt: str, params: dict[str, Any]) -> tuple[list[Any], float, list[str], int | None]:
    """The input values for a request, the duration asked of the app, sentences about what was adjusted, the seed.

    The app's seed box starts at 45 and the app never changes it: a job with no seed (or -1) gets a fresh
    random one here, so two jobs do not make the same sound; the seed sent is returned to be recorded.
    """
    if not prompt.strip():
        raise GradioError("sound generation needs a text prompt", FailureCode.VALIDATION)
    slots, data, notes = Slots.read(ep), ep.defaults(), []
    data[slots.text] = prompt
    for key, slot, unit in (("duration", slots.duration, " s"), ("guidance", slots.guidance, "")):
        wanted = _number(params, key)
        if wanted is None or slot is None:
            continue
        comp = ep.inputs[slot]
        data[slot] = snap(wanted, comp)
        if abs(data[slot] - wanted) > 1e-6:
            low, high, step = (comp.number(k) for k in ("minimum", "maximum", "step"))
            notes.append(f"{key} {wanted:g}{unit} is not offered; using {data[slot]:g}{unit} (this app takes "
                         f"{low:g}–{high:g}{unit}{f' in steps of {step:g}' if step else ''})")
    seed: int | None = None
    if slots.seed is not None:
        asked = _number(params, "seed")
        seed = int(asked) if asked is not None and asked >= 0 else secrets.randbelow(SEED_MAX + 1)
        data[slots.seed] = seed
    candidates = _number(params, "candidates")
    if candidates is not None and slots.candidates is not None:
        data[slots.candidates] = int(snap(candidates, ep.inputs[slots.candidates]))
    model = params.get("model")
    if model:
        if slots.model is None:
            notes.append(f"this app has no model choice; model {model!r} is ignored")
        elif model not in ep.inputs[slots.model].choices:
            offered = ", ".join(map(str, ep.inputs[slots.model].choices))
            raise GradioError(f"model {model!r} is not offered (choose one of {offered})", FailureCode.VALIDATION)
        else:
            data[slots.model] = model
    return data, float(data[slots.duration]), notes, seed


def demux_wav(video: Path, target: Path) -> Path:
    """Write the first audio track of ``video`` as 16-bit PCM WAV at its own rate (blocking: run off the loop)."""
    import av
    import numpy as np

    try:
        return _demux(av, np, video, target)
    except av.FFmpegError as err:
        raise ValueError(str(err)) from err


def _demux(av: Any, np: Any, video: Path, target: Path) -> Path:
    with av.open(str(video)) as container:
        if not container.streams.audio:
            raise GradioError(f"{video.name} has no audio track", FailureCode.BAD_RESPONSE)
        stream = container.streams.audio[0]
        rate, channels = stream.rate, stream.codec_context.channels
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        resampler = av.AudioResampler(format="s16", layout=stream.layout.name, rate=rate)
        chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream)
                  for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if seconds is not None:  # the decoder's priming and padding samples are not part of the sound
        pcm = pcm[:int(round(seconds * rate)) * channels]
    with wave.open(str(target), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return target


class AudioLdmBackend(GradioAppBackend):
    """Sound effects and ambiences from an AudioLDM or AudioLDM2 web app."""

    kind = KIND
    display_name = "AudioLDM"

    def __init__(self, record: ServiceRecord, sessions: SessionProvider, *,
                 timeouts: GradioTimeouts | None = None) -> None:
        self.record = record
        self.app = GradioApp(record.base_url, sessions, service=record.id, timeouts=timeouts)

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this backend can run."""
        return tuple(TASKS)

    async def _endpoint(self) -> Endpoint:
        return await self.app.endpoint("text2audio", where=is_text_to_audio)

    async def probe(self) -> dict[str, Any]:
        """The models and the duration range the app offers."""
        ep = await self._endpoint()
        slots = Slots.read(ep)
        duration = ep.inputs[slots.duration]
        return {"models": ep.inputs[slots.model].choices if slots.model is not None else [],
                "duration": {k: duration.number(k) for k in ("minimum", "maximum", "step")},
                "endpoint": ep.name, "protocol": self.app.protocol}

    async def submit(self, job: JobRequest) -> AsyncIterator[JobStatus]:
        """Generate, fetch the MP4, demux its audio; yield RUNNING, PROGRESS, then FINISHED (WAV, MP4) or FAILED."""
        try:
            async for status in self._generate(job, uuid.uuid4().hex[:11]):
                yield status
        except GradioError as err:
            yield err.status()
        except Exception as err:  # an adapter bug must end this job, not the job manager's loop
            log.exception("AudioLDM job %s failed inside the adapter", job.id)
            yield failed(f"internal error in the AudioLDM adapter: {type(err).__name__}: {err}",
                         FailureCode.RUNTIME)

    async def _generate(self, job: JobRequest, ref: str) -> AsyncIterator[JobStatus]:
        ep = await self._endpoint()
        data, seconds, notes, seed = plan(ep, job.prompt, job.params)  # bad requests fail here, before RUNNING
        yield JobStatus(StatusCode.RUNNING, remote_ref=ref, message=f"asking {self.record.id} for {seconds:g} s")
        yield progress(1, STEPS, "; ".join([f"generating {seconds:g} s of audio", *notes]), ref)
        result: CallResult | None = None
        async for item in self.app.call(ep, data, job.output_dir, ref=ref):
            if isinstance(item, CallResult):
                result = item
            else:
                yield JobStatus(item.code, item.fraction, item.step, item.total, item.unit, item.message,
                                item.queue_rank, item.eta, ref)
        if result is None:
            return  # call() ended on a terminal status (dropped from the queue), already passed on
        files = result.files()
        if not files:
            raise GradioError(f"{self.record.id}: {ep.name} answered without an audio or video file "
                              f"(got {str(result.values)[:120]})", FailureCode.BAD_RESPONSE)
        media = files[0]
        if media.suffix.lower() == ".wav":
            outputs: tuple[Path, ...] = (media,)
        else:
            yield progress(2, STEPS, f"extracting the audio from {media.name}", ref)
            try:  # PyAV (and FFmpeg) load in the worker thread: importing it here would stall the loop
                wav = await asyncio.to_thread(demux_wav, media, unique_path(job.output_dir, media.stem + ".wav"))
            except (OSError, ValueError) as err:
                raise GradioError(f"{self.record.id}: could not read the audio of {media.name}: {err}",
                                  FailureCode.BAD_RESPONSE) from err
            outputs = (wav, media)
        used = f" (seed {seed})" if seed is not None else ""
        message = "; ".join([f"{seconds:g} s of audio for {job.prompt!r}{used}", *notes])
        yield JobStatus(StatusCode.SUCCEEDED, fraction=1.0, step=STEPS, total=STEPS, unit="steps", message=message,
                        remote_ref=ref, outputs=tuple([await asyncio.to_thread(OutputFile.of, p) for p in outputs]),
                        detail={"duration": seconds, "adjusted": notes,
                                CHOSEN: {"seed": seed} if seed is not None else {}})
