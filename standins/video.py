"""Synthetic media for the stand-ins: real MP4 (PyAV, libx264), PNG and WAV files derived from a prompt and seed."""
from __future__ import annotations

import hashlib
import math
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


_CELL = 4  # gradient cell size in pixels


class Stopped(Exception):
    """Writing was interrupted by the caller's stop check; the partial file has been removed."""


def _params(prompt: str, seed: int) -> np.random.Generator:
    """A random generator fixed by prompt and seed, so the same request draws the same pictures."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class FramePainter:
    """Paints frame i of n: moving colour gradients plus a sweeping bar, all chosen by prompt and seed."""

    def __init__(self, width: int, height: int, prompt: str, seed: int) -> None:
        rng = _params(prompt, seed)
        self.width, self.height = width, height
        self.freq = rng.uniform(0.5, 2.5, size=(3, 2)).astype(np.float32)
        self.phase = rng.uniform(0, 2 * math.pi, size=3).astype(np.float32)
        self.drift = rng.uniform(0.5, 2.0, size=3).astype(np.float32)
        self.bar_colour = rng.integers(0, 256, size=3, dtype=np.uint8)
        # Gradients are painted on a quarter-size grid and scaled up: smooth anyway, and 16x cheaper.
        self.x = np.linspace(0.0, 1.0, -(-width // _CELL), dtype=np.float32)
        self.y = np.linspace(0.0, 1.0, -(-height // _CELL), dtype=np.float32)

    def frame(self, index: int, count: int) -> np.ndarray:
        """One RGB frame (height x width x 3, uint8)."""
        t = index / max(1, count)
        small = np.empty((self.y.size, self.x.size, 3), dtype=np.uint8)
        by = 2 * math.pi * self.y
        for c in range(3):
            ax = 2 * math.pi * (self.freq[c, 0] * self.x + self.drift[c] * t) + self.phase[c]
            small[:, :, c] = 127.5 + 127.5 * np.sin(ax[None, :] + self.freq[c, 1] * by[:, None])
        out = np.repeat(np.repeat(small, _CELL, axis=0), _CELL, axis=1)[:self.height, :self.width]
        out = np.ascontiguousarray(out)
        bar_w = max(2, self.width // 16)
        left = int(t * (self.width - bar_w))
        out[:, left:left + bar_w] = self.bar_colour
        return out


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as the exact fraction FFmpeg wants (23.976 becomes 24000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def write_mp4(path: Path, width: int, height: int, frames: int, fps: float, prompt: str, seed: int,
              should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Write an H.264/yuv420p MP4 with exactly ``frames`` frames; raise Stopped if should_stop() turns true."""
    painter = FramePainter(width, height, prompt, seed)
    try:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps_fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # ultrafast keeps a stand-in render well under a second for typical test sizes.
            stream.options = {"preset": "ultrafast", "crf": "23"}
            for i in range(frames):
                if should_stop is not None and should_stop():
                    raise Stopped()
                frame = av.VideoFrame.from_ndarray(painter.frame(i, frames), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return {"resolution": f"{width}x{height}", "frame_count": frames, "fps": _plain(fps),
            "duration_seconds": _plain(round(frames / fps, 3))}


def write_png(path: Path, width: int, height: int, prompt: str, seed: int) -> dict[str, Any]:
    """Write one PNG image painted like the first frame of a video."""
    from PIL import Image

    Image.fromarray(FramePainter(width, height, prompt, seed).frame(0, 1)).save(path, format="PNG")
    return {"resolution": f"{width}x{height}"}


def write_wav(path: Path, seconds: float, prompt: str, seed: int, rate: int = 44100) -> dict[str, Any]:
    """Write a mono 16-bit WAV: a short melody of sine notes chosen by prompt and seed."""
    rng = _params(prompt, seed)
    total = max(1, int(round(seconds * rate)))
    note_len = rate // 4
    notes = 220.0 * 2 ** (rng.integers(0, 24, size=total // note_len + 1) / 12)
    t = np.arange(total, dtype=np.float32) / rate
    freq = np.repeat(notes, note_len)[:total].astype(np.float32)
    envelope = np.minimum(1.0, (np.arange(total) % note_len) / 400.0).astype(np.float32)
    samples = (0.3 * 32767 * envelope * np.sin(2 * math.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return {"duration_seconds": _plain(round(total / rate, 3)), "audio_sampling_rate": rate}


def probe(path: Path) -> dict[str, Any]:
    """Resolution, frame count, fps and duration of a media file, as far as FFmpeg can tell; {} if unreadable."""
    try:
        with av.open(str(path)) as container:
            stats: dict[str, Any] = {}
            if container.streams.video:
                vs = container.streams.video[0]
                stats["resolution"] = f"{vs.codec_context.width}x{vs.codec_context.height}"
                if vs.frames:
                    stats["frame_count"] = int(vs.frames)
                if vs.average_rate:
                    stats["fps"] = _plain(round(float(vs.average_rate), 3))
            if container.duration:
                stats["duration_seconds"] = _plain(round(container.duration / 1_000_000, 3))
            return stats
    except (av.FFmpegError, OSError, ValueError):
        return {}


def _plain(value: float) -> float | int:
    """A whole float as an int (16.0 -> 16), as Wan2GP reports it."""
    return int(value) if float(value).is_integer() else value
