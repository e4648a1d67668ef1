"""A test double of Backlot's socket API (JSON-RPC 2.0 over NDJSON) for the addon's failure modes and benchmark.

It speaks the protocol of DESIGN.md "Local socket API" on 127.0.0.1, runs its own asyncio loop on a
thread (so a Blender subprocess and the test can both talk to it), and produces real media: an MP4
with sound (PyAV), a PNG (Pillow) and a WAV (``wave``). The Blender tests run against a real
``backlot --headless``; this double stays where a real instance cannot do what a test needs: a server
that goes away or never answers (the client tests), jobs held and released on cue (the tick benchmark),
and a clip with a sound track, which no stand-in renders.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from backlot.standins.video import write_png, write_wav

TOKEN = "test-token-0123456789"
FPS = 24
TASKS = [
    {"name": "text_to_video", "title": "Text to video", "output": "video",
     "params": [{"name": "frames", "type": "int", "min": 8, "max": 240, "default": 24, "help": "clip length in frames"},
                {"name": "seed", "type": "int", "min": 0, "max": 2**31 - 1, "default": 0, "help": "noise seed"},
                {"name": "sampler", "type": "choice", "choices": ["euler", "dpmpp"], "default": "euler", "help": ""},
                {"name": "fps", "type": "int", "min": 8, "max": 60, "default": FPS, "help": "the clip's frame rate"}],
     "inputs": []},
    {"name": "image_to_video", "title": "Image to video", "output": "video",
     "params": [{"name": "frames", "type": "int", "min": 8, "max": 240, "default": 24, "help": "clip length"}],
     "inputs": [{"name": "image", "media": "image", "required": True}]},
    {"name": "text_to_image", "title": "Text to image", "output": "image",
     "params": [{"name": "width", "type": "int", "min": 64, "max": 2048, "default": 64, "help": "pixels"},
                {"name": "height", "type": "int", "min": 64, "max": 2048, "default": 64, "help": "pixels"}],
     "inputs": []},
    {"name": "sound_effects", "title": "Sound effects", "output": "audio",
     "params": [{"name": "duration", "type": "float", "min": 0.5, "max": 30.0, "default": 1.0, "help": "seconds"}],
     "inputs": []},
]
WORKFLOWS = [  # the shape of the real workflows.list: one built-in and one user workflow for text_to_image
    {"kind": "comfyui", "name": "text_to_image", "task": "text_to_image", "description": "SD 1.5 txt2img",
     "params": ["height", "prompt", "seed", "width"], "requires_input": False, "source": "built-in"},
    {"kind": "comfyui", "name": "my_flow", "task": "text_to_image", "description": "a slow one",
     "params": ["prompt", "seconds", "seed"], "requires_input": False, "source": "/home/me/.config/backlot/workflows"},
    {"kind": "comfyui", "name": "upscale", "task": "upscale", "description": "4x", "params": ["input_image"],
     "requires_input": True, "source": "built-in"}]
SERVICES = [{"id": "wan2gp@127.0.0.1:8000", "kind": "wan2gp", "state": "up", "usable": True},
            {"id": "comfyui@127.0.0.1:8188", "kind": "comfyui", "state": "degraded", "usable": True},
            {"id": "audioldm@127.0.0.1:7863", "kind": "audioldm", "state": "down", "usable": True}]


BAR = 4  # pixels: frame k of a clip shows a white bar at x = (k % 32) * BAR


def bar_frame(k: int) -> np.ndarray:
    """A 128x32 picture whose white bar's position tells which frame of the clip it is."""
    img = np.zeros((32, 128, 3), np.uint8)
    x = (k % 32) * BAR
    img[:, x:x + BAR] = 255
    return img


def frame_index(rgb: np.ndarray) -> int | None:
    """Which clip frame a rendered 128x32 picture shows (the bar's position), None when there is no bar."""
    columns = rgb.astype(float).mean(axis=(0, 2))
    return int(columns.argmax()) // BAR if columns.max() > 100 else None


def write_mp4_with_sound(path: Path, frames: int, fps: int = FPS, rate: int = 44100) -> None:
    """An H.264 clip of ``frames`` bar frames (see ``bar_frame``) with an AAC tone as long as the picture."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 128, 32, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(bar_frame(k), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            container.mux(video.encode(frame))
        total = rate * frames // fps
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(total) / rate)).astype(np.float32)
        for start in range(0, total, 1024):
            chunk = tone[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


class FakeBacklot:
    """The fake instance: ``start()`` returns (host, port); jobs finish after ``job_seconds`` unless held."""

    def __init__(self, out_dir: Path, token: str = TOKEN, job_seconds: float = 0.3) -> None:
        self.out_dir, self.token, self.job_seconds = out_dir, token, job_seconds
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.held: set[str] = set()  # prompts whose jobs stay running until released ("*": every job)
        # launch entries by name as launch.list shows them (None: a Backlot from before the launcher); a start
        # answers "starting" and the entry runs when the test calls ``launch_ready``; names in ``refuse_start``
        # are refused with their sentence
        self.launch: dict[str, dict[str, Any]] | None = {}
        self.refuse_start: dict[str, str] = {}
        self._release: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._subscribers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-backlot", daemon=True)
        self.port = 0

    def start(self, port: int = 0) -> tuple[str, int]:
        """Listen on 127.0.0.1 (port 0: any free one)."""
        if not self._thread.is_alive():
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(port), self._loop).result(10)
        return "127.0.0.1", self.port

    async def _listen(self, port: int) -> None:
        self._release = self._release or asyncio.Event()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", port, limit=2**20)
        self.port = self._server.sockets[0].getsockname()[1]

    def close_listener(self) -> None:
        """Stop listening and drop every client (the instance went away)."""
        asyncio.run_coroutine_threadsafe(self._close_listener(), self._loop).result(10)

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    def hold(self, *prompts: str) -> None:
        """Keep jobs with these prompts ("*": all) running until released."""
        self.held.update(prompts or ("*",))

    def release(self, *prompts: str) -> None:
        """Let held jobs finish (these prompts, or all)."""
        if prompts:
            self.held.difference_update(prompts)
        else:
            self.held.clear()
        self._loop.call_soon_threadsafe(lambda: self._release.set() if self._release else None)

    def stop(self) -> None:
        """Stop everything and the loop's thread."""
        self.close_listener()

        async def cancel_all() -> None:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ---- connections ------------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        authed, failures = False, 0
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    await self._send(writer, {"jsonrpc": "2.0", "id": None,
                                              "error": {"code": -32700, "message": "parse error"}})
                    continue
                method, params, req_id = msg.get("method"), msg.get("params") or {}, msg.get("id")
                self.calls.append((method, params))
                if not authed and method != "session.hello":
                    await self._error(writer, req_id, -32001, "say hello first")
                    continue
                if method == "session.hello":
                    if params.get("token") != self.token or params.get("protocol") != 1:
                        failures += 1
                        await self._error(writer, req_id, -32001, "wrong token")
                        if failures >= 3:
                            break
                        continue
                    authed = True
                    await self._send(writer, {"jsonrpc": "2.0", "id": req_id,
                                              "result": {"server": "backlot-fake", "protocol": 1}})
                    continue
                try:
                    result = self._dispatch(writer, method, params)
                except LookupError as err:
                    await self._error(writer, req_id, err.args[0], err.args[1])
                    continue
                await self._send(writer, {"jsonrpc": "2.0", "id": req_id, "result": result})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._subscribers.discard(writer)
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        writer.write(json.dumps(msg).encode() + b"\n")
        await writer.drain()

    async def _error(self, writer: asyncio.StreamWriter, req_id: Any, code: int, message: str) -> None:
        await self._send(writer, {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}})

    def _dispatch(self, writer: asyncio.StreamWriter, method: str, params: dict[str, Any]) -> Any:
        if method == "session.ping":
            return {"pong": True}
        if method == "services.list":
            return {"services": SERVICES}
        if method == "tasks.list":
            return {"tasks": TASKS}
        if method == "workflows.list":
            return {"workflows": WORKFLOWS}
        if method == "events.subscribe":
            self._subscribers.add(writer)
            return {"topics": params.get("topics", [])}
        if method == "jobs.submit":
            return self._submit(params)
        if method.startswith("launch.") and self.launch is not None:
            return self._launch(method, params)
        if method == "jobs.list":
            return {"jobs": list(self.jobs.values())}
        job = self.jobs.get(str(params.get("job")))
        if method in ("jobs.get", "jobs.cancel", "jobs.outputs") and job is None:
            raise LookupError(-32003, "unknown job")
        if method == "jobs.get":
            return job
        if method == "jobs.outputs":
            return {"outputs": job["outputs"]}
        if method == "jobs.cancel":
            if job["state"] in ("queued", "running"):
                job["cancel_requested"] = True
            return job
        raise LookupError(-32601, f"unknown method {method}")

    def _launch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.launch is not None
        if method == "launch.list":
            return {"entries": list(self.launch.values())}
        if method != "launch.start":
            raise LookupError(-32601, f"unknown method {method}")
        names = list(params.get("names") or [])
        for name in names:
            if name not in self.launch:
                raise LookupError(-32003, f"no launch entry named {name!r}")
            if name in self.refuse_start:
                raise LookupError(-32602, self.refuse_start[name])
        for name in names:
            if self.launch[name]["state"] != "running":
                self._launch_update(name, state="starting", pid=4242, message="starting (pid 4242)")
        return {"entries": [self.launch[n] for n in names]}

    def launch_ready(self, name: str) -> None:
        """The started entry answers on its port: it is running (a launch.updated to every subscriber)."""
        self._loop.call_soon_threadsafe(self._launch_update, name, "running", "running (pid 4242)")

    def _launch_update(self, name: str, state: str, message: str, pid: int | None = None) -> None:
        assert self.launch is not None
        view = self.launch[name] = {**self.launch[name], "state": state, "message": message,
                                    **({"pid": pid} if pid else {})}
        line = json.dumps({"jsonrpc": "2.0", "method": "launch.updated", "params": view}).encode() + b"\n"
        for w in list(self._subscribers):
            w.write(line)

    def _submit(self, params: dict[str, Any]) -> dict[str, Any]:
        task = next((t for t in TASKS if t["name"] == params.get("task")), None)
        if task is None:
            raise LookupError(-32602, f"unknown task {params.get('task')!r}")
        job = {"id": uuid.uuid4().hex, "seq": len(self.jobs) + 1, "task": task["name"],
               "prompt": str(params.get("prompt", "")), "params": dict(params.get("params") or {}),
               "inputs": list(params.get("inputs") or []), "requested_backend": params.get("backend", "auto"),
               "state": "queued", "status": {"code": "queued", "fraction": None, "message": ""},
               "outputs": [], "error": None, "cancel_requested": False, "updated_at": time.time()}
        self.jobs[job["id"]] = job
        t = self._loop.create_task(self._run(job, task["output"]), name=f"fake-job-{job['seq']}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return job

    async def _update(self, job: dict[str, Any], **changes: Any) -> None:
        job.update(changes, updated_at=time.time())
        line = json.dumps({"jsonrpc": "2.0", "method": "job.updated", "params": {"job": job}}).encode() + b"\n"
        for w in list(self._subscribers):
            w.write(line)

    async def _run(self, job: dict[str, Any], output: str) -> None:
        await asyncio.sleep(0.05)
        for step in range(1, 4):
            if job["cancel_requested"]:
                await self._update(job, state="cancelled", status={"code": "cancelled", "fraction": None})
                return
            await self._update(job, state="running", status={"code": "running", "fraction": step / 4})
            await asyncio.sleep(self.job_seconds / 3)
            while ("*" in self.held or job["prompt"] in self.held) and not job["cancel_requested"]:
                assert self._release is not None
                self._release.clear()
                await _wait(self._release, 0.2)
        if job["cancel_requested"]:
            await self._update(job, state="cancelled", status={"code": "cancelled", "fraction": None})
            return
        out = await asyncio.to_thread(self._media, job, output)
        await self._update(job, state="succeeded", status={"code": "succeeded", "fraction": 1.0}, outputs=[out])

    def _media(self, job: dict[str, Any], output: str) -> dict[str, Any]:
        folder = self.out_dir / job["id"]
        folder.mkdir(parents=True, exist_ok=True)
        p = job["params"]
        if output == "video":
            path, mime = folder / "clip.mp4", "video/mp4"
            write_mp4_with_sound(path, int(p.get("frames", 24)), int(p.get("fps", FPS)))
        elif output == "audio":
            path, mime = folder / "sound.wav", "audio/wav"
            write_wav(path, float(p.get("duration", 1.0)), job["prompt"], 0)
        else:
            path, mime = folder / "image.png", "image/png"
            write_png(path, int(p.get("width", 64)), int(p.get("height", 64)), job["prompt"], 0)
        return {"path": str(path), "mime": mime, "bytes": path.stat().st_size}


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


# ---- fixtures (import them into a test module) ------------------------------------------------------------
try:
    import pytest
except ImportError:  # the benchmark imports this module without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    from collections.abc import Iterator
    from typing import NamedTuple

    class Endpoint(NamedTuple):
        """Where a Backlot API listens and the token to say hello with."""

        host: str
        port: int
        token: str

    @pytest.fixture
    def fake_backlot(tmp_path: Path) -> Iterator[FakeBacklot]:
        """The fake instance, for tests that steer it (hold jobs, restart the listener)."""
        fake = FakeBacklot(tmp_path / "outputs")
        fake.start()
        yield fake
        fake.stop()

    @pytest.fixture
    def backlot_api(fake_backlot: FakeBacklot) -> Endpoint:
        """(host, port, token) of a running Backlot API; swap the body for a real ``backlot --headless``."""
        return Endpoint("127.0.0.1", fake_backlot.port, fake_backlot.token)
