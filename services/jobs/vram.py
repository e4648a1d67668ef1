"""VRAM admission: per-task estimates from config, replaced by learned peaks once there are enough samples."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from backlot.services.config import Settings
from backlot.services.jobs.store import JobStore

GIB = 1024**3


def size_bucket(params: dict[str, Any]) -> int:
    """A coarse size class: log2 of megapixel-frames (so 512², 1024² and 81 frames land apart)."""
    try:
        w = float(params.get("width", 1024))
        h = float(params.get("height", 1024))
        frames = float(params.get("frames", 1) or 1)
    except (TypeError, ValueError):
        return 0
    mpf = max(w * h * frames / 1e6, 1e-3)
    return int(round(math.log2(mpf)))


class VramEstimator:
    """Estimates the VRAM a job needs on a backend; learns from finished jobs through the store."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._learned: dict[tuple[str, str, int], list[int]] = defaultdict(list)

    def estimate(self, backend: str, task: str, params: dict[str, Any]) -> tuple[int | None, str]:
        """(bytes needed or None when unknown, where the figure comes from)."""
        peaks = self._learned.get((backend, task, size_bucket(params)), [])
        if len(peaks) >= self.settings.vram_learn_min_samples:
            return int(max(peaks) * 1.1), f"learned from {len(peaks)} jobs"
        gib = self.settings.vram_estimates_gib.get(task)
        if not gib:
            return None, "no estimate"
        return int(gib * GIB), "configured estimate"

    async def load_all(self) -> None:
        """Read every learned peak from the store (at start, so learning survives restarts)."""
        self._learned.clear()
        for backend, task, bucket, peak in await self.store.peak_samples():
            peaks = self._learned[(backend, task, bucket)]
            if len(peaks) < 20:
                peaks.append(peak)

    async def load(self, backend: str, task: str, params: dict[str, Any]) -> None:
        """Read what the store knows for this backend, task and size."""
        key = (backend, task, size_bucket(params))
        self._learned[key] = [p for p, _ in await self.store.samples(*key) if p is not None]

    async def learn(self, backend: str, task: str, params: dict[str, Any], peak: int | None, duration: float) -> None:
        """Record a finished job's peak VRAM and duration."""
        key = (backend, task, size_bucket(params))
        await self.store.record_sample(backend, task, key[2], peak, duration)
        if peak is not None:
            self._learned[key] = ([peak] + self._learned.get(key, []))[:20]
