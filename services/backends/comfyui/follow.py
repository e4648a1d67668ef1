"""Following one prompt on ComfyUI's WebSocket: whole-workflow progress, latent previews, the end of the run.

Frames and binary layouts: reference/comfyui.md, section 4. ``progress_state`` carries every started node's
``value``/``max``/``state`` each time; servers without it send ``executing`` and ``progress`` only.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from backlot.services.backends.base import FailureCode, JobStatus, StatusCode, failed
from backlot.services.backends.previews import PreviewWriter

log = logging.getLogger(__name__)
SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
# Relative cost of a node class: a sampler's steps dwarf a decode or a save; every other class weighs 1.
NODE_WEIGHT = {**dict.fromkeys(SAMPLERS, 20), "StandinSleep": 20, "ImageUpscaleWithModel": 6, "ImageBlur": 4,
               "VAEDecode": 3, "VAEDecodeTiled": 3, "VAEEncode": 2, "SaveVideo": 2}
TERMINAL = ("execution_success", "execution_error", "execution_interrupted")
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4  # binary event types (3, TEXT, is not an image)
IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}
FEATURE_FLAGS = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
BELOW_DONE = 0.99  # progress stays under 1.0 until the server says the prompt succeeded
PROGRESS_EVERY = 0.1  # seconds between progress statuses within one node


@dataclass(frozen=True)
class LatentPreview:
    """One decoded binary preview frame; ``prompt_id`` only in the metadata form."""

    data: bytes
    mime: str
    prompt_id: str | None = None
    node_id: str | None = None


def decode_preview(frame: bytes) -> LatentPreview | None:
    """A PREVIEW_IMAGE (1) or PREVIEW_IMAGE_WITH_METADATA (4) frame decoded; None for other or broken frames."""
    if len(frame) < 8:
        return None
    event, word = struct.unpack(">II", frame[:8])
    if event == PREVIEW_IMAGE:
        mime = IMAGE_TYPES.get(word)
        return LatentPreview(frame[8:], mime) if mime and len(frame) > 8 else None
    if event != PREVIEW_IMAGE_WITH_METADATA or len(frame) <= 8 + word:
        return None
    try:
        meta = json.loads(frame[8:8 + word])
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("image_type") not in IMAGE_TYPES.values():
        return None
    pid, node = meta.get("prompt_id"), meta.get("node_id")
    return LatentPreview(frame[8 + word:], str(meta["image_type"]), str(pid) if pid is not None else None,
                         str(node) if node is not None else None)


class ProgressTracker:
    """The workflow's fraction done: node fractions weighted by class, cached nodes out, never going back."""

    def __init__(self, workflow: Mapping[str, Any]) -> None:
        self.classes = {str(n): str(v.get("class_type", "?")) for n, v in workflow.items() if isinstance(v, dict)}
        self.weights = {n: NODE_WEIGHT.get(c, 1) for n, c in self.classes.items()}
        self.cached: set[str] = set()
        self.done: dict[str, float] = {}
        self.current: str | None = None
        self._shown = 0.0

    def on_cached(self, nodes: Iterable[Any]) -> None:
        """``execution_cached``: these nodes will not run, so they leave the total."""
        self.cached.update(str(n) for n in nodes)

    def on_state(self, nodes: Mapping[str, Any]) -> None:
        """``progress_state``: the whole map of started nodes."""
        for nid, state in nodes.items():
            if isinstance(state, dict):
                done = state.get("state") == "finished"
                self._advance(str(nid), 1.0 if done else _ratio(state.get("value"), state.get("max")))

    def on_executing(self, node: str) -> None:
        """``executing``: ``node`` starts, so the one before it has finished (old servers say no more)."""
        if self.current is not None and self.current != node:
            self._advance(self.current, 1.0)
        self.current = node
        self._advance(node, 0.0)

    def on_progress(self, node: str, value: Any, maximum: Any) -> None:
        """``progress``: one node's value of max."""
        self._advance(node, _ratio(value, maximum))

    def fraction(self) -> float:
        """Weighted fraction of the nodes that run, at least the last one given and below 1.0."""
        running = {n: w for n, w in self.weights.items() if n not in self.cached}
        total = sum(running.values())
        raw = sum(w * self.done.get(n, 0.0) for n, w in running.items()) / total if total else 0.0
        self._shown = max(self._shown, min(BELOW_DONE, raw))
        return self._shown

    def _advance(self, node: str, part: float) -> None:
        if node in self.weights:  # ids the server's own node expansion makes (5.0.1) are not in the workflow
            self.done[node] = max(self.done.get(node, 0.0), min(1.0, part))


class SocketFollower:
    """Turns one prompt's WebSocket frames into statuses: progress, previews, and the moment it ends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, pid: str, workflow: Mapping[str, Any],
                 dropped: asyncio.Event, previews: PreviewWriter, *, idle: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ws, self.pid, self.dropped, self.previews = ws, pid, dropped, previews
        self.idle, self.clock = idle, clock
        self.tracker = ProgressTracker(workflow)
        self.started = False
        self._step: tuple[int, int] | None = None
        self._sent = float("-inf")
        self._preview_failed = False

    async def statuses(self, deadline: float, job_timeout: float) -> AsyncIterator[JobStatus]:
        """Statuses until the prompt ends; ends without a terminal status when the caller must read /history."""
        while not self.ws.closed:
            frame = await self._next_frame()
            if frame is None:
                if self.dropped.is_set():
                    yield JobStatus(StatusCode.CANCELLED, message="removed from ComfyUI's queue")
                return  # socket gone or idle: the caller polls
            if isinstance(frame, bytes):
                status = await self._preview(frame)
            elif frame.get("type") in TERMINAL and _data(frame).get("prompt_id") == self.pid:
                return
            else:
                status = self._on_frame(str(frame.get("type")), _data(frame))
            if status is not None:
                yield status
            if self.clock() > deadline:
                yield failed(f"no result after {job_timeout:.0f} s", FailureCode.TIMEOUT)
                return

    def _on_frame(self, kind: str, data: dict[str, Any]) -> JobStatus | None:
        if data.get("prompt_id") != self.pid:
            return None  # status broadcasts, the feature_flags answer, frames of other prompts
        track = self.tracker
        if kind == "execution_start":
            self.started = True
            return JobStatus(StatusCode.RUNNING, fraction=track.fraction(), remote_ref=self.pid, message="started")
        if kind == "execution_cached":
            track.on_cached(data.get("nodes") or [])
        elif kind == "progress_state" and isinstance(data.get("nodes"), dict):
            track.on_state(data["nodes"])
            return self._progress(force=False)
        elif kind == "executing" and data.get("node") is not None:
            track.on_executing(str(data["node"]))
            self._step = None
            return self._progress(force=True)
        elif kind == "progress":
            node = str(data.get("node") or track.current)
            track.on_progress(node, data.get("value"), data.get("max"))
            value, maximum = _number(data.get("value")), _number(data.get("max"))
            self._step = (int(value), int(maximum))
            return self._progress(force=value >= maximum)
        return None

    def _progress(self, force: bool) -> JobStatus | None:
        now = self.clock()
        if not force and now - self._sent < PROGRESS_EVERY:
            return None
        self._sent = now
        return self._status()

    def _status(self) -> JobStatus:
        node = self.tracker.current
        cls = self.tracker.classes.get(node or "", "?")
        step, total = self._step or (None, None)
        return JobStatus(StatusCode.PROGRESS, fraction=self.tracker.fraction(), step=step, total=total,
                         unit="steps" if cls in SAMPLERS and step is not None else "",
                         message=f"node {node} ({cls})" if node is not None else "running", remote_ref=self.pid)

    async def _preview(self, frame: bytes) -> JobStatus | None:
        preview = decode_preview(frame)
        if preview is None or not self.started:
            return None
        if preview.prompt_id is not None and preview.prompt_id != self.pid:
            return None  # the metadata form names its prompt; the plain one belongs to the prompt running here
        if not self.previews.due():
            return None
        try:
            image = await self.previews.write(preview.data, preview.mime)
        except OSError as err:  # a preview is a nicety: a full disk must not fail the job
            if not self._preview_failed:
                self._preview_failed = True
                log.warning("cannot keep a preview of prompt %s: %s", self.pid, err)
            return None
        return JobStatus(StatusCode.PROGRESS, fraction=self.tracker.fraction(), remote_ref=self.pid,
                         message=self._status().message, preview=image)

    async def _next_frame(self) -> dict[str, Any] | bytes | None:
        """The next text frame as a dict or binary frame as bytes; None when the socket ends, idles or is dropped."""
        receive = asyncio.ensure_future(self.ws.receive())
        drop = asyncio.ensure_future(self.dropped.wait())
        try:
            done, _ = await asyncio.wait({receive, drop}, timeout=self.idle, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drop.cancel()
            if not receive.done():
                receive.cancel()
                await asyncio.gather(receive, return_exceptions=True)
        if receive not in done:
            return None
        msg = receive.result()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        try:
            frame = json.loads(msg.data)
        except ValueError:
            return {}
        return frame if isinstance(frame, dict) else {}


def _data(frame: dict[str, Any]) -> dict[str, Any]:
    data = frame.get("data")
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float:
    """A frame's number (absent: 0); junk raises ValueError/TypeError, which fails the job as a bad response."""
    return 0.0 if value is None else float(value)


def _ratio(value: Any, maximum: Any) -> float:
    top = _number(maximum)
    return max(0.0, _number(value) / top) if top > 0 else 0.0
