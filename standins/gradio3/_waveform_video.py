"""A waveform MP4 like Gradio's ``make_waveform``: bars drawn with numpy, H.264 video + AAC audio via PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, BARS = 320, 128, 10, 48
_BG = np.array([11, 15, 25], dtype=np.uint8)          # Gradio's dark background
_BAR = np.array([249, 115, 22], dtype=np.uint8)       # its default waveform colour (orange-500)
_PLAYED = np.array([253, 186, 116], dtype=np.uint8)   # bars already played, lighter
_AAC_FRAME = 1024


def _images(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The waveform drawn twice: unplayed and played colours."""
    chunks = np.array_split(np.abs(samples), BARS)
    levels = np.array([c.max() if len(c) else 0.0 for c in chunks])
    levels = levels / (levels.max() + 1e-9)
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    slot = WIDTH / BARS
    mid = HEIGHT // 2
    for i, level in enumerate(levels):
        x0, x1 = int(i * slot + slot * 0.2), int((i + 1) * slot - slot * 0.2)
        half = max(1, int(level * (HEIGHT * 0.45)))
        mask[mid - half:mid + half, x0:max(x1, x0 + 1)] = True
    base = np.broadcast_to(_BG, (HEIGHT, WIDTH, 3)).copy()
    played = base.copy()
    base[mask], played[mask] = _BAR, _PLAYED
    return base, played


def write_waveform_mp4(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write mono float samples in [-1, 1] as an MP4 whose picture is their waveform."""
    # Whole AAC frames only: a padded last frame would decode as up to 64 ms of extra silence.
    if len(samples) > _AAC_FRAME:
        samples = samples[:len(samples) - len(samples) % _AAC_FRAME]
    base, played = _images(samples)
    duration = len(samples) / rate
    n_frames = max(1, int(np.ceil(duration * FPS)))
    columns = np.arange(WIDTH)[None, :, None]
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "30"}
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for k in range(n_frames):
            cursor = int(WIDTH * min(1.0, k / FPS / duration)) if duration else WIDTH
            frame = av.VideoFrame.from_ndarray(np.where(columns < cursor, played, base), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        pcm = np.asarray(samples, dtype=np.float32)
        for start in range(0, len(pcm), _AAC_FRAME):
            chunk = pcm[start:start + _AAC_FRAME]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path
