"""Wan2GP stand-in jobs: a one-at-a-time generation queue with Wan2GP-shaped events, snapshots and results."""
from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backlot.standins import video
from backlot.standins.wan2gp_gallery import Gallery
from backlot.standins.wan2gp_models import Catalogue, Model
from backlot.standins.wan2gp_settings import TaskError, output_name, prepare, split_tasks, task_settings

log = logging.getLogger(__name__)

MAX_STORED_EVENTS = 500
DEFAULT_EVENT_LIMIT = 20
DOWNLOAD_SECONDS = 1.0  # simulated first download of a 'missing' model, at --speed 1
# What the real Wan2GP says (after ~23 s of download retries) when a model's weights are missing and the Hugging
# Face hub cannot be reached: it names no model.
OFFLINE_DOWNLOAD_ERROR = ("An error happened while trying to locate the file on the Hub and we cannot find the "
                          "requested files in the local cache. Please check your connection and try again or make "
                          "sure your Internet connection is on.")


class Cancelled(Exception):
    """The job was cancelled while a task ran."""


class Job:
    """One submitted generation: its task list, event log and final result."""

    def __init__(self, tasks: list[Any]) -> None:
        self.job_id = uuid.uuid4().hex
        self.tasks = tasks
        self.created_at = self.updated_at = time.time()
        self.events: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.cancel_event = threading.Event()
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        """True once the job has a result."""
        return self._done.is_set()

    def emit(self, kind: str, data: Any) -> None:
        """Append an event, keeping at most MAX_STORED_EVENTS (the oldest go first)."""
        now = time.time()
        with self._lock:
            self.events.append({"kind": kind, "timestamp": now, "data": copy.deepcopy(data)})
            del self.events[:-MAX_STORED_EVENTS]
            self.updated_at = now

    def finish(self, result: dict[str, Any]) -> None:
        """Store the result, emit ``completed`` and wake everyone waiting on the job."""
        self.emit("completed", result)
        with self._lock:
            self.result = copy.deepcopy(result)
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for callback in callbacks:
            callback()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the worker thread) when the job finishes, or now if it has."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def snapshot(self, gallery: Gallery, event_limit: int | None = None) -> dict[str, Any]:
        """The job as wangp_get_job returns it; the result gains the gallery records of its files."""
        limit = DEFAULT_EVENT_LIMIT if event_limit is None else max(0, min(int(event_limit), MAX_STORED_EVENTS))
        with self._lock:
            events = copy.deepcopy(self.events[-limit:]) if limit else []
            result = copy.deepcopy(self.result)
            updated_at = self.updated_at
        if result is not None:
            result["gallery_items"] = gallery.for_paths(result["generated_files"])
        return {"job_id": self.job_id, "done": self.done, "cancel_requested": self.cancel_event.is_set(),
                "webui_submission_ready": False, "webui_load_queue_token": "", "created_at": self.created_at,
                "updated_at": updated_at, "events": events, "result": result}


class JobRunner:
    """Runs jobs one at a time on a worker thread; later jobs wait in a queue."""

    def __init__(self, catalogue: Catalogue, gallery: Gallery, outputs: Path, speed: float = 1.0) -> None:
        self.catalogue, self.gallery, self.outputs, self.speed = catalogue, gallery, outputs, speed
        self._jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._current: Job | None = None
        self._loaded_model: str | None = None
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="wan2gp-worker", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker."""
        with self._cond:
            self._stopping = True
            jobs = ([self._current] if self._current else []) + list(self._pending)
            self._cond.notify_all()
        for job in jobs:
            job.cancel_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, source: dict[str, Any] | list[dict[str, Any]]) -> Job:
        """Queue a job; shape errors in ``source`` raise here, everything else fails inside the job."""
        job = Job(split_tasks(source))
        with self._cond:
            if self._stopping:
                raise RuntimeError("WanGP is shutting down")
            self._jobs[job.job_id] = job
            self._pending.append(job)
            self._cond.notify_all()
        log.info("job %s queued with %s task(s)", job.job_id, len(job.tasks))
        return job

    def get(self, job_id: str) -> Job:
        """The job, or KeyError naming the id."""
        with self._cond:
            job = self._jobs.get(str(job_id or "").strip())
        if job is None:
            raise KeyError(f"Unknown WanGP job_id: {job_id}")
        return job

    def cancel(self, job_id: str) -> Job:
        """Request cancellation; a queued job ends at once, a running one at its next step."""
        job = self.get(job_id)
        job.cancel_event.set()
        with self._cond:
            queued = job in self._pending
            if queued:
                self._pending.remove(job)
        if queued:
            self._finish(job, [], [], [], successful=0, cancelled=True)
        log.info("job %s cancel requested", job_id)
        return job

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    for job in self._pending:
                        self._finish(job, [], [], [], successful=0, cancelled=True)
                    self._pending.clear()
                    return
                job = self._current = self._pending.popleft()
            try:
                self._run(job)
            except Exception:  # a bug here must not kill the worker and strand later jobs
                log.exception("job %s crashed", job.job_id)
                if not job.done:
                    self._finish(job, [], [], [{"message": "internal error", "task_index": 0, "task_id": None,
                                                "stage": "runtime", "cancelled": False}], successful=0)
            finally:
                with self._cond:
                    self._current = None

    def _run(self, job: Job) -> None:
        job.emit("started", {"tasks": len(job.tasks)})
        files: list[str] = []
        artifacts: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        successful = 0
        for index, task in enumerate(job.tasks):
            if job.cancel_event.is_set():
                break
            task_id: Any = index + 1
            try:
                settings, given_id = task_settings(task)
                task_id = given_id if given_id is not None else task_id
                model, settings = prepare(settings, self.catalogue)
                new_files, new_artifacts = self._generate(job, model, settings)
            except Exception as err:  # every task failure is reported inside the job, never raised
                if not isinstance(err, (TaskError, Cancelled)):
                    log.exception("job %s task %s failed", job.job_id, index)
                cancelled = isinstance(err, Cancelled)
                error = {"message": "Generation cancelled" if cancelled else str(err), "task_index": index,
                         "task_id": task_id, "stage": err.stage if isinstance(err, TaskError) else "runtime",
                         "cancelled": cancelled}
                errors.append(error)
                job.emit("error", error)
                log.info("job %s task %s: %s", job.job_id, index, error["message"])
                continue
            files += new_files
            artifacts += new_artifacts
            successful += 1
        self._finish(job, files, artifacts, errors, successful, cancelled=job.cancel_event.is_set())

    def _finish(self, job: Job, files: list[str], artifacts: list[dict[str, Any]], errors: list[dict[str, Any]],
                successful: int, cancelled: bool = False) -> None:
        total = len(job.tasks)
        job.finish({"success": successful == total and not cancelled, "cancelled": cancelled,
                    "generated_files": files, "errors": errors, "total_tasks": total,
                    "successful_tasks": successful, "failed_tasks": total - successful, "artifacts": artifacts})
        log.info("job %s done: %s/%s task(s) ok%s", job.job_id, successful, total, ", cancelled" if cancelled else "")

    def _pause(self, job: Job, seconds: float) -> None:
        """Simulated work: wait ``seconds`` (scaled by --speed), stopping early on cancel."""
        if job.cancel_event.wait(seconds / self.speed):
            raise Cancelled()

    def _progress(self, job: Job, phase: str, status: str, step: int, steps: int) -> None:
        job.emit("progress", {"phase": phase, "status": status, "progress": int(100 * step / max(1, steps)),
                              "current_step": step, "total_steps": steps, "raw_phase": status, "unit": None})

    def _load(self, job: Job, model: Model) -> None:
        """Download (first use of a 'missing' model) and load the model unless it is already loaded."""
        if self._loaded_model == model.model_type:
            return
        if not self.catalogue.availability(model.model_type)["available"]:
            job.emit("status", f"Downloading {model.name} model files")
            self._progress(job, "downloading", "Downloading model", 0, 1)
            self._pause(job, DOWNLOAD_SECONDS)
            if self.catalogue.offline:
                raise TaskError(OFFLINE_DOWNLOAD_ERROR, "runtime")
            self.catalogue.mark_installed(model.model_type)
        job.emit("status", f"Loading model {model.name}")
        self._progress(job, "loading_model", "Loading model", 0, 1)
        self._pause(job, model.load_seconds)
        self._loaded_model = model.model_type

    def _generate(self, job: Job, model: Model, settings: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """Run one task: load, denoise step by step, then write the output file(s)."""
        self._load(job, model)
        steps, prompt = settings["num_inference_steps"], str(settings.get("prompt", "") or "")
        what = {"audio": lambda: f"{settings['duration_seconds']} s of audio",
                "image": lambda: f"a {settings['resolution']} image",
                "video": lambda: f"{settings['frames']} frames at {settings['resolution']}"}[model.main_output]()
        job.emit("stream", {"stream": "stdout", "text": f"Generating {what} with {model.name}, {steps} steps"})
        files, artifacts = [], []
        for b in range(settings["batch_size"]):
            seed = settings["seed"] + b
            for step in range(1, steps + 1):
                self._pause(job, model.step_seconds(settings))
                self._progress(job, "denoising", "Denoising", step, steps)
            self._progress(job, "decoding", "VAE Decoding", steps, steps)
            path, stats = self._write(job, model, settings, prompt, seed)
            self.gallery.add(path, {**settings, "seed": seed}, stats)
            files.append(str(path.resolve()))
            artifacts.append({"path": str(path.resolve()), "media_type": model.main_output, "client_id": "",
                              "hdr": False, "audio_sampling_rate": stats.get("audio_sampling_rate"),
                              "fps": stats.get("fps"), "has_video_tensor_uint8": False,
                              "has_video_tensor_hdr": False, "has_audio_tensor": False})
            job.emit("status", f"Saved {path.name}")
        return files, artifacts

    def _write(self, job: Job, model: Model, settings: dict[str, Any], prompt: str,
               seed: int) -> tuple[Path, dict[str, Any]]:
        """Write one output file into outputs/ under Wan2GP's naming; return its path and media stats."""
        ext = {"video": ".mp4", "image": ".png", "audio": ".wav"}[model.main_output]
        self.outputs.mkdir(parents=True, exist_ok=True)
        name = output_name(prompt, seed, ext)
        path, n = self.outputs / name, 1
        while path.exists():  # two outputs in the same second with the same seed and prompt
            n += 1
            path = self.outputs / f"{Path(name).stem}_{n}{ext}"
        if model.main_output == "audio":
            return path, video.write_wav(path, settings["duration_seconds"], prompt, seed)
        if model.main_output == "image":
            return path, video.write_png(path, settings["width"], settings["height"], prompt, seed)
        try:
            stats = video.write_mp4(path, settings["width"], settings["height"], settings["frames"], settings["fps"],
                                    prompt, seed, should_stop=job.cancel_event.is_set)
        except video.Stopped:
            raise Cancelled() from None
        return path, stats
