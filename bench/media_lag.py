"""GUI event-loop lag while the output viewer's VideoPlayer plays a 24 fps clip (offscreen, target p99 <= 16 ms).

For each clip a 1 ms precise QTimer runs beside the player; its lateness (time between two timeouts less 1 ms) is
the lag. The clip is loaded and played at once, so the first seconds include the decoder's first pass in its
worker thread. Clips: 10 s at 512x512 (all frames fit the cache) and 10 s at 1024x576 (more than the cache
holds: the decoder keeps a sliding window). Also reports the frames shown against the frames due.
Last line: {"bench": "media_lag", ..., "met": bool}.
Run: .venv/bin/python -m bench.media_lag [--seconds 6]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av
import numpy as np
from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication

from backlot.widgets.media import VideoPlayer

TARGET_P99_MS = 16.0
FPS = 24
CLIPS = [(512, 512), (1024, 576)]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else 0.0


def write_clip(path: Path, width: int, height: int, seconds: int = 10) -> None:
    """A moving gradient with noise (so H.264 has real work), ``seconds`` long at FPS."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for k in range(seconds * FPS):
            img = (x + y * 0.5 + k * 4) % 256 + rng.integers(0, 24, (height, width, 1))
            frame = av.VideoFrame.from_ndarray(np.repeat(img, 3, axis=2).clip(0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def measure(path: Path, seconds: float) -> dict[str, Any]:
    """Play ``path`` for ``seconds`` and return the loop lag figures and frames shown."""
    player = VideoPlayer()
    player.resize(960, 600)
    player.show()
    shown: list[int] = []
    player.position_changed.connect(shown.append)
    lags: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lags.append(max(0.0, (now - last[0]) * 1000 - 1.0))
        last[0] = now

    probe = QTimer(timerType=Qt.TimerType.PreciseTimer, interval=1)
    probe.timeout.connect(tick)
    started = time.perf_counter()
    player.load(path)
    player.play()
    loop = QEventLoop()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    probe.start()
    loop.exec()
    probe.stop()
    first = player.fps
    played = time.perf_counter() - started
    result = {"lag_p50_ms": round(pct(lags, 50), 2), "lag_p99_ms": round(pct(lags, 99), 2),
              "lag_max_ms": round(max(lags, default=0.0), 2), "samples": len(lags),
              "frames_shown": len(shown), "frames_due": int(played * (first or FPS)),
              "cached": player._decoder.cached() if player._decoder else 0}
    player.close()
    player.deleteLater()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    _app = QApplication.instance() or QApplication([])  # must outlive the players
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for width, height in CLIPS:
            path = Path(folder) / f"clip{width}x{height}.mp4"
            write_clip(path, width, height)
            name = f"{width}x{height}"
            results[name] = measure(path, args.seconds)
            r = results[name]
            print(f"{name} @ {FPS} fps: loop lag p50 {r['lag_p50_ms']} ms, p99 {r['lag_p99_ms']} ms, "
                  f"max {r['lag_max_ms']} ms ({r['samples']} samples); frames shown {r['frames_shown']} "
                  f"of {r['frames_due']} due; {r['cached']} frames cached", flush=True)
    met = all(r["lag_p99_ms"] <= TARGET_P99_MS for r in results.values())
    print(json.dumps({"bench": "media_lag", "target_p99_ms": TARGET_P99_MS, **results, "met": met}))


if __name__ == "__main__":
    main()
