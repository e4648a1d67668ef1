"""A running job's latest preview image: throttled, written atomically into its output folder, off the loop."""
from __future__ import annotations

import asyncio
import os
import struct
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from backlot.services.backends.base import PreviewImage

PREVIEW_RATE = 4.0  # previews kept per second at most; a sampler may send one per step
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png"}


class PreviewWriter:
    """Keeps ``<folder>/preview.jpg`` (or ``.png``) as the job's latest preview, at most ``rate`` per second.

    Previews that come sooner are dropped, never queued: only the latest matters, and one write at a
    time keeps the disk and the subscribers calm whatever the backend sends.
    """

    def __init__(self, folder: Path, *, rate: float = PREVIEW_RATE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.interval = 1.0 / rate
        self.clock = clock
        self.seq = 0
        self.offered = 0  # previews the backend sent, kept or not
        self._last: float | None = None
        self._written: set[Path] = set()

    def due(self) -> bool:
        """Count one offered preview; True when enough time has passed to keep it (the slot is taken)."""
        self.offered += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True

    async def write(self, data: bytes, mime: str) -> PreviewImage:
        """Replace the job's preview with ``data`` (call after ``due()``); OSError when the folder is unwritable."""
        target = self.folder / ("preview" + SUFFIXES.get(mime, ".img"))
        await asyncio.to_thread(_replace, target, data, self._written - {target})
        self._written = {target}
        self.seq += 1
        width, height = image_size(data)
        return PreviewImage(target, mime, self.seq, width, height)

    async def discard(self) -> None:
        """Remove the preview file (the job's real result replaces it)."""
        written, self._written = self._written, set()
        for path in written:
            await asyncio.to_thread(path.unlink, missing_ok=True)


def _replace(target: Path, data: bytes, stale: set[Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)  # readers see the old image or the new one, never half of one
    finally:
        tmp.unlink(missing_ok=True)
    for path in stale:  # a node that sends PNG after one that sent JPEG: one preview file, not two
        path.unlink(missing_ok=True)


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) read from a PNG or JPEG header; (None, None) for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return int(width), int(height)
            i += 2 + length
    return None, None
