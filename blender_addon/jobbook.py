"""Job bookkeeping and strip placement for the addon, free of ``bpy`` so it is tested and timed outside Blender."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_IMPORT_TRIES = 3  # an import that fails this often waits for the user's "Import again"
IMPORT_RETRY_S = 1.0  # between two tries of one import
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted", "rejected")
SCENE_KEY = "backlot_jobs"  # scene custom property holding the tracked jobs as JSON
MAX_CHANNEL = 128
# Placeholder colours by state (linear RGB): grey waiting, amber running, red failed.
COLOURS = {"sending": (0.35, 0.35, 0.35), "queued": (0.35, 0.35, 0.35), "running": (0.8, 0.55, 0.1),
           "failed": (0.7, 0.1, 0.1), "interrupted": (0.7, 0.1, 0.1), "rejected": (0.7, 0.1, 0.1)}


@dataclass
class Tracked:
    """A job the addon started, where its result goes, and how far it got."""

    key: str  # local id, known before Backlot accepts the job
    scene: str
    prompt: str
    task: str
    frame: int
    channel: int
    length: int
    output: str = ""  # the media the task produces (video, audio, image, text)
    job: str | None = None
    seq: int | None = None
    state: str = "sending"
    fraction: float | None = None
    message: str = ""
    updated_at: float = 0.0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    imported: bool = False
    strips: list[str] = field(default_factory=list)
    import_tries: int = 0  # failed tries to place the result on the timeline
    import_error: str = ""  # why the last try failed
    sent: str = ""  # the Backlot job whose output the window sent to Blender (no job of this addon's)

    @property
    def terminal(self) -> bool:
        """True once the job will not change again."""
        return self.state in TERMINAL

    @property
    def label(self) -> str:
        """How the job is named on the timeline and in the panel."""
        if self.sent:
            return f"sent #{self.seq}" if self.seq is not None else "sent"
        if self.seq is not None:
            return f"job #{self.seq}"
        return f"job {self.job[:8]}" if self.job else f"job (sending {self.key[:6]})"

    @property
    def needs_import(self) -> bool:
        """Succeeded with outputs that are not on the timeline yet, and tries left."""
        return self.state == "succeeded" and not self.imported and self.import_tries < MAX_IMPORT_TRIES

    @property
    def import_failed(self) -> bool:
        """Every try to place the result failed; the user may ask for another round."""
        return self.state == "succeeded" and not self.imported and self.import_tries >= MAX_IMPORT_TRIES

    @property
    def progress(self) -> str:
        """State and percentage as one short phrase."""
        if self.import_failed:
            return "import failed"
        if self.state == "running" and self.fraction is not None:
            return f"running {round(self.fraction * 100)}%"
        return self.state


def new_key() -> str:
    """A fresh local job key."""
    return uuid.uuid4().hex[:12]


class JobBook:
    """Every job the addon tracks, in all open scenes; ``version`` grows on each change."""

    def __init__(self) -> None:
        self.records: dict[str, Tracked] = {}
        self._by_job: dict[str, str] = {}
        self.version = 0
        self.dirty_scenes: set[str] = set()

    def _touch(self, rec: Tracked, persist: bool = True) -> None:
        self.version += 1
        if persist:  # progress alone is not worth rewriting the scene property on every tick
            self.dirty_scenes.add(rec.scene)

    def add(self, scene: str, prompt: str, task: str, frame: int, channel: int, length: int, output: str) -> Tracked:
        """Track a job about to be submitted."""
        rec = Tracked(new_key(), scene, prompt, task, int(frame), int(channel), int(length), output)
        self.records[rec.key] = rec
        self._touch(rec)
        return rec

    def add_sent(self, scene: str, place: dict[str, Any], frame: int, fps: float) -> Tracked | None:
        """Track a file Backlot sent (a ``blender.place`` notification) to be placed at ``frame``; None when it
        names no file Blender can place. It is finished already: the tick imports it like a job's result."""
        path, mime = str(place.get("path") or ""), str(place.get("mime") or "")
        kind = media_kind(mime)
        if not path or not kind:
            return None
        seq = place.get("seq")
        rec = Tracked(new_key(), scene, str(place.get("prompt") or place.get("name") or ""), "from Backlot", int(frame), 1,
                      placeholder_length({}, fps, kind), kind, seq=seq if isinstance(seq, int) else None,
                      state="succeeded", outputs=[{"path": path, "mime": mime}], sent=str(place.get("job_id") or "?"))
        self.records[rec.key] = rec
        self._touch(rec)
        return rec

    def get(self, key: str) -> Tracked | None:
        """The record for a local key."""
        return self.records.get(key)

    def by_job(self, job_id: str) -> Tracked | None:
        """The record for a Backlot job id."""
        key = self._by_job.get(job_id)
        return self.records.get(key) if key else None

    def accepted(self, key: str, job: dict[str, Any]) -> Tracked | None:
        """Backlot accepted the submission: remember its id, then apply the job."""
        rec = self.records.get(key)
        if rec is None or not job.get("id"):
            return None
        rec.job = str(job["id"])
        self._by_job[rec.job] = key
        self.apply(job)
        self._touch(rec)
        return rec

    def rejected(self, key: str, message: str) -> Tracked | None:
        """Backlot refused the submission (or never got it)."""
        rec = self.records.get(key)
        if rec is not None:
            rec.state, rec.message = "rejected", message
            self._touch(rec)
        return rec

    def apply(self, job: dict[str, Any]) -> Tracked | None:
        """Apply a job dict (``job.updated`` or a ``jobs.get`` reply); None when not ours or stale."""
        rec = self.by_job(str(job.get("id", "")))
        if rec is None:
            return None
        updated = float(job.get("updated_at") or 0.0)
        if rec.terminal or (updated and updated < rec.updated_at):
            return None
        status = job.get("status") or {}
        persist = (rec.state, rec.seq) != (job.get("state", rec.state), job.get("seq", rec.seq))
        rec.updated_at = updated or rec.updated_at
        rec.seq = job.get("seq", rec.seq)
        rec.state = str(job.get("state") or rec.state)
        fraction = status.get("fraction")
        rec.fraction = float(fraction) if isinstance(fraction, (int, float)) else None
        error = job.get("error") or {}
        rec.message = str(error.get("message") or status.get("message") or "")
        rec.outputs = list(job.get("outputs") or [])
        self._touch(rec, persist)
        return rec

    def mark_imported(self, rec: Tracked, strips: list[str], message: str = "") -> None:
        """The result is on the timeline (or could not be, with ``message``)."""
        rec.imported, rec.strips = True, strips
        if message or rec.import_tries:  # a success after failed tries clears their message
            rec.message = message
        rec.import_tries, rec.import_error = 0, ""
        self._touch(rec)

    def import_failed_once(self, rec: Tracked, error: str) -> None:
        """One try to place the result failed; after MAX_IMPORT_TRIES the record stops asking."""
        rec.import_tries += 1
        rec.import_error = error
        if rec.import_failed:
            rec.message = f"{error} The files stay in Backlot: press Import Again once this is fixed."
        else:
            rec.message = f"{error} (try {rec.import_tries} of {MAX_IMPORT_TRIES})"
        self._touch(rec)

    def import_again(self, rec: Tracked) -> None:
        """The user asks for a new round of tries (the result is placed again if it is not on the timeline)."""
        rec.imported, rec.strips, rec.import_tries, rec.import_error, rec.message = False, [], 0, "", ""
        self._touch(rec)

    def forget(self, key: str) -> None:
        """Stop tracking a job."""
        rec = self.records.pop(key, None)
        if rec is not None:
            if rec.job:
                self._by_job.pop(rec.job, None)
            self._touch(rec)

    def for_scene(self, scene: str) -> list[Tracked]:
        """A scene's jobs, newest first."""
        return [r for r in reversed(self.records.values()) if r.scene == scene]

    def watching(self) -> list[Tracked]:
        """Jobs Backlot knows that still need news: running ones and finished ones not imported."""
        return [r for r in self.records.values() if r.job and (not r.terminal or r.needs_import)]

    def dumps(self, scene: str) -> str:
        """One scene's jobs as JSON for its custom property."""
        return json.dumps([asdict(r) for r in self.records.values() if r.scene == scene])

    def load(self, scene: str, text: str) -> int:
        """Replace one scene's jobs with those saved in its custom property; returns how many."""
        for key in [k for k, r in self.records.items() if r.scene == scene]:
            self.forget(key)
        try:
            items = json.loads(text) if text else []
        except ValueError:
            items = []
        names = set(Tracked.__dataclass_fields__)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "key" in item:
                rec = Tracked(**{k: v for k, v in item.items() if k in names})
                rec.scene = scene
                if not rec.job and not rec.terminal:  # saved before Backlot answered: it never will now
                    rec.state, rec.message = "rejected", "The file was saved before Backlot accepted this job."
                self.records[rec.key] = rec
                if rec.job:
                    self._by_job[rec.job] = rec.key
        self.dirty_scenes.discard(scene)
        return sum(1 for r in self.records.values() if r.scene == scene)


# ---- placement ------------------------------------------------------------------------------------------
def free_channel(occupied: Iterable[tuple[int, int, int]], start: int, length: int, span: int = 1,
                 lowest: int = 1) -> int:
    """The lowest channel >= ``lowest`` where ``span`` channels are free over [start, start+length).

    ``occupied`` holds (channel, frame_start, frame_end) of the strips already there.
    """
    end = start + max(1, length)
    busy = {ch for ch, s, e in occupied if s < end and start < e}
    for ch in range(max(1, lowest), MAX_CHANNEL - span + 2):
        if all(c not in busy for c in range(ch, ch + span)):
            return ch
    return MAX_CHANNEL - span + 1


def placeholder_length(params: dict[str, Any], fps: float, output: str, default_seconds: float = 2.0) -> int:
    """Frames to reserve before the result is known: ``frames``/``video_length``, else seconds at ``fps``."""
    for key in ("frames", "video_length", "num_frames"):
        if isinstance(params.get(key), (int, float)) and params[key] > 0:
            return int(params[key])
    for key in ("duration", "seconds", "audio_length"):
        if isinstance(params.get(key), (int, float)) and params[key] > 0:
            return max(1, round(float(params[key]) * fps))
    return max(1, round(default_seconds * fps)) if output != "text" else max(1, round(fps))


def media_kind(mime: str, expected: str = "") -> str:
    """video, audio, image or text for an output; a video file from an audio task is imported as sound."""
    major = (mime or "").split("/", 1)[0]
    if major == "video" and expected == "audio":
        return "audio"
    return major if major in ("video", "audio", "image", "text") else ""


def choose_output(outputs: list[dict[str, Any]], expected: str = "") -> tuple[str, str] | None:
    """(kind, path) of the output to import: the first of the expected media, else the first importable."""
    found = [(media_kind(str(o.get("mime", "")), expected), str(o.get("path", ""))) for o in outputs]
    found = [(k, p) for k, p in found if k and p]
    for kind, path in found:
        if kind == expected:
            return kind, path
    return found[0] if found else None


def strip_name(prompt: str, limit: int = 48) -> str:
    """A strip name from a prompt: one line, at most ``limit`` characters."""
    text = " ".join(prompt.split()) or "backlot"
    return text if len(text) <= limit else text[:limit - 1] + "…"
