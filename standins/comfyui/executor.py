"""The stand-in's prompt queue and executor: ComfyUI 0.8's queue, history, cache and WS messages."""
from __future__ import annotations

import asyncio
import hashlib
import heapq
import io
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from backlot.standins.comfyui.nodes import Interrupted, RunContext, all_functions

log = logging.getLogger(__name__)
Send = Callable[[str, dict[str, Any], "str | None"], None]
SendPreview = Callable[[str, bytes, dict[str, Any], "str | None", bool], None]  # type, bytes, metadata, sid, form
PREVIEW_SIZE = 512  # ComfyUI's --preview-size default
MAX_HISTORY = 10000


def now_ms() -> int:
    """Epoch milliseconds, as ComfyUI stamps its messages."""
    return int(time.time() * 1000)


@dataclass
class Folders:
    """Where the stand-in keeps files, like ComfyUI's input/, output/ and temp/."""

    input: Path
    output: Path
    temp: Path

    @classmethod
    def under(cls, root: Path) -> Folders:
        """Create the three folders under ``root``."""
        made = cls(root / "input", root / "output", root / "temp")
        for p in (made.input, made.output, made.temp):
            p.mkdir(parents=True, exist_ok=True)
        return made


class Executor:
    """One worker that runs queued prompts in order, sending ComfyUI's WS frames as it goes."""

    def __init__(self, folders: Folders, speed: float, send: Send, job_vram: int,
                 send_preview: SendPreview | None = None) -> None:
        self.folders = folders
        self.speed = speed
        self.send = send
        self.send_preview = send_preview  # None: no latent previews (ComfyUI's --preview-method none)
        self.job_vram = job_vram
        self.pending: list[tuple[int, int, list[Any]]] = []
        self.running: list[Any] | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.vram_in_use = 0
        self._number = 0
        self._seq = 0
        self._cache: dict[str, tuple[Any, Any]] = {}
        self._interrupt = threading.Event()
        self._wakeup = asyncio.Event()
        self._runnable: dict[str, dict[str, Any]] = {}  # validated copies, keyed by prompt id
        self._functions = all_functions()

    # ----- queue -----
    def queue_remaining(self) -> int:
        """Pending plus running prompts, as /prompt and status frames count them."""
        return len(self.pending) + (1 if self.running is not None else 0)

    def broadcast_status(self) -> None:
        """Send the queue count to every client."""
        self.send("status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}, None)

    def enqueue(self, prompt_id: str, number: int | None, front: bool, prompt: dict[str, Any],
                runnable: dict[str, Any], outputs: list[str], extra_data: dict[str, Any]) -> int:
        """Queue a validated prompt; return its number (negative for ``front``)."""
        if number is None:
            number = -self._number if front else self._number
            self._number += 1
        self._seq += 1
        item = [number, prompt_id, prompt, extra_data, outputs]
        heapq.heappush(self.pending, (number, self._seq, item))
        self._runnable[prompt_id] = runnable
        self.broadcast_status()
        self.broadcast_status()  # ComfyUI sends the enqueue status twice
        self._wakeup.set()
        return number

    def queue_items(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """(running, pending) with pending in heap order, not sorted, like ComfyUI."""
        return ([self.running] if self.running is not None else []), [entry[2] for entry in self.pending]

    def delete(self, ids: list[str]) -> None:
        """Drop pending prompts; a running one is untouched (use interrupt)."""
        before = len(self.pending)
        self.pending = [e for e in self.pending if e[2][1] not in ids]
        heapq.heapify(self.pending)
        if len(self.pending) != before:
            self.broadcast_status()

    def clear(self) -> None:
        """Empty the pending queue; the running prompt finishes."""
        self.pending = []
        self.broadcast_status()

    def shutdown(self) -> None:
        """Stop the running node at once and drop the queue (the process is exiting)."""
        self.pending = []
        self._interrupt.set()

    def interrupt(self, prompt_id: str | None) -> None:
        """Interrupt the running prompt (only if it is ``prompt_id`` when one is given)."""
        if self.running is None:
            return
        if prompt_id is not None and self.running[1] != prompt_id:
            return
        self._interrupt.set()

    # ----- execution -----
    async def run_forever(self) -> None:
        """Take prompts off the queue one at a time until cancelled."""
        while True:
            while not self.pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            _, _, item = heapq.heappop(self.pending)
            self.running = item
            self._interrupt.clear()
            self.vram_in_use = self.job_vram
            try:
                await self._execute(item)
            except Exception:  # the worker must survive anything one prompt does
                log.exception("prompt %s crashed the stand-in executor", item[1])
            finally:
                self.running = None
                self.vram_in_use = 0
                self._runnable.pop(item[1], None)
                self.broadcast_status()
                self.send("executing", {"node": None, "prompt_id": item[1]}, item[3].get("client_id"))

    async def _execute(self, item: list[Any]) -> None:
        number, pid, prompt, extra, outputs = item
        sid = extra.get("client_id")
        runnable = self._runnable.get(pid, prompt)
        messages: list[list[Any]] = []
        state: dict[str, dict[str, Any]] = {}
        ui_outputs: dict[str, Any] = {}
        loop = asyncio.get_running_loop()

        def emit(kind: str, data: dict[str, Any], record: bool = False) -> None:
            if record:
                messages.append([kind, data])
            self.send(kind, data, sid)

        def progress_state() -> None:
            emit("progress_state", {"prompt_id": pid, "nodes": json.loads(json.dumps(state))})

        def set_state(nid: str, value: float, maximum: float, st: str) -> None:
            state[nid] = {"value": value, "max": maximum, "state": st, "node_id": nid, "prompt_id": pid,
                          "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}

        order = self._order(runnable, outputs)
        signatures = {nid: self._signature(runnable, nid, {}) for nid in order}
        cached = [nid for nid in order if signatures[nid] in self._cache]
        emit("execution_start", {"prompt_id": pid, "timestamp": now_ms()}, record=True)
        emit("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": now_ms()}, record=True)
        results: dict[str, Any] = {}
        executed: list[str] = []
        for nid in order:
            node = runnable[nid]
            if signatures[nid] in self._cache:
                results[nid], ui = self._cache[signatures[nid]]
                if ui is not None:
                    ui_outputs[nid] = ui
                    emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid})
                    set_state(nid, 1.0, 1.0, "finished")
                    progress_state()
                continue
            if self._interrupt.is_set():
                self._interrupted(emit, pid, nid, node, executed)
                self._history(item, ui_outputs, messages, "error", completed=False)
                return
            set_state(nid, 0.0, 1.0, "running")
            progress_state()
            emit("executing", {"node": nid, "display_node": nid, "prompt_id": pid})
            args = {k: (results[str(v[0])][v[1]] if _is_link(v) else v) for k, v in node.get("inputs", {}).items()}

            def progress(value: float, maximum: float, preview: tuple[str, Image.Image] | None = None,
                         nid: str = nid) -> None:
                encoded = _encode(*preview) if preview is not None and self.send_preview is not None else None
                meta = {"node_id": nid, "prompt_id": pid, "display_node_id": nid, "parent_node_id": None,
                        "real_node_id": nid}

                def _send() -> None:  # ComfyUI's order: progress_state, preview (metadata form), progress, preview
                    set_state(nid, value, maximum, "running")
                    progress_state()
                    if encoded is not None and self.send_preview is not None:
                        self.send_preview(encoded[0], encoded[1], meta, sid, True)
                    emit("progress", {"value": value, "max": maximum, "prompt_id": pid, "node": nid})
                    if encoded is not None and self.send_preview is not None:
                        self.send_preview(encoded[0], encoded[1], meta, sid, False)
                loop.call_soon_threadsafe(_send)

            ctx = RunContext(self.folders.output, self.folders.temp, self.folders.input, self.speed, prompt,
                             extra.get("extra_pnginfo", {}), self._interrupt, progress,
                             lambda n: setattr(self, "vram_in_use", max(self.vram_in_use, self.job_vram + n)))
            try:
                out = await asyncio.to_thread(self._functions[node["class_type"]], ctx, **args)
            except Interrupted:
                self._interrupted(emit, pid, nid, node, executed)
                self._history(item, ui_outputs, messages, "error", completed=False)
                return
            except Exception as ex:  # a node failure is reported like ComfyUI's execution_error
                emit("execution_error", {
                    "prompt_id": pid, "node_id": nid, "node_type": node["class_type"], "executed": executed,
                    "exception_message": f"{ex}\n", "exception_type": type(ex).__name__,
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {k: [repr(v)[:200]] for k, v in args.items()},
                    "current_outputs": list(results), "timestamp": now_ms()}, record=True)
                self._history(item, {}, messages, "error", completed=False)
                return
            ui = out.get("ui") if isinstance(out, dict) else None
            results[nid] = out if isinstance(out, tuple) else ()
            self._cache[signatures[nid]] = (results[nid], ui)
            executed.append(nid)
            if ui is not None:
                ui_outputs[nid] = ui
                emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid})
            set_state(nid, 1.0, 1.0, "finished")
            progress_state()
        live = set(signatures.values())
        self._cache = {k: v for k, v in self._cache.items() if k in live}
        emit("execution_success", {"prompt_id": pid, "timestamp": now_ms()}, record=True)
        self._history(item, ui_outputs, messages, "success", completed=True)

    def _interrupted(self, emit: Callable[..., None], pid: str, nid: str, node: dict[str, Any], executed: list[str]) -> None:
        emit("execution_interrupted", {"prompt_id": pid, "node_id": nid, "node_type": node["class_type"],
                                       "executed": list(executed), "timestamp": now_ms()}, record=True)

    def _history(self, item: list[Any], outputs: dict[str, Any], messages: list[list[Any]], status: str,
                 completed: bool) -> None:
        pid = item[1]
        self.history[pid] = {
            "prompt": item, "outputs": outputs,
            "status": {"status_str": status, "completed": completed, "messages": messages},
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                     for nid in outputs},
        }
        while len(self.history) > MAX_HISTORY:
            self.history.pop(next(iter(self.history)))

    @staticmethod
    def _order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for value in prompt[nid].get("inputs", {}).values():
                if _is_link(value):
                    visit(str(value[0]))
            order.append(nid)

        for out in outputs:
            visit(out)
        return order

    def _signature(self, prompt: dict[str, Any], nid: str, memo: dict[str, str]) -> str:
        if nid in memo:
            return memo[nid]
        node = prompt[nid]
        parts: dict[str, Any] = {}
        for key, value in sorted(node.get("inputs", {}).items()):
            parts[key] = ["link", self._signature(prompt, str(value[0]), memo), value[1]] if _is_link(value) else value
        if node["class_type"] == "LoadImage":  # like LoadImage.IS_CHANGED: a new upload re-runs it
            path = self.folders.input / str(parts.get("image", "")).rsplit(" [", 1)[0]
            parts["_mtime"] = path.stat().st_mtime_ns if path.exists() else 0
        raw = json.dumps([node["class_type"], parts], sort_keys=True, default=str)
        memo[nid] = hashlib.sha256(raw.encode()).hexdigest()
        return memo[nid]


def _encode(image_type: str, image: Image.Image) -> tuple[str, bytes]:
    """A preview image as ComfyUI sends it: at most PREVIEW_SIZE a side, JPEG (quality 95) or PNG."""
    image = ImageOps.contain(image, (PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=image_type, quality=95, compress_level=1)
    return image_type, buf.getvalue()


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool)
