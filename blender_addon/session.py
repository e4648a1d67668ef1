"""The addon's state and its timer tick, free of ``bpy``: the timeline is reached through a small host interface."""
from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from . import client as rpc
from .jobbook import IMPORT_RETRY_S, JobBook, Tracked, choose_output
from .launches import TOPIC as LAUNCH_TOPIC
from .launches import LaunchBook
from .schema import TaskSpec, parse_tasks
from .workflows import WorkflowSpec, parse_workflows

log = logging.getLogger(__name__)
TOPICS = ["job.updated", "service.updated"]
PLACE_TOPIC = "blender.place"  # Backlot's "Send to Blender": subscribed on its own, so an older Backlot without it
# refuses that one subscription only
STATE_SYMBOLS = {"up": "●", "degraded": "◐", "down": "○", "unknown": "◌"}


class TimelineHost(Protocol):
    """What the session needs from Blender; the bpy implementation lives in ``timeline.py``."""

    def update_placeholder(self, rec: Tracked) -> None:
        """Rename and recolour a job's placeholder strip after its state changed."""

    def remove_placeholder(self, rec: Tracked) -> None:
        """Delete a job's placeholder strip."""

    def import_result(self, rec: Tracked, kind: str, path: str) -> list[str]:
        """Replace the placeholder with the result; returns the new strips' names."""

    def save_scene(self, scene: str, text: str) -> None:
        """Store a scene's tracked jobs in its custom property."""

    def playhead(self) -> tuple[str, int, float]:
        """The sequencer's scene, its current frame and its frame rate (where a sent file goes)."""

    def busy(self) -> bool:
        """True while Blender is rendering, so timeline edits wait for the next tick."""

    def redraw(self) -> None:
        """Repaint the panels."""


def service_state(svc: dict[str, Any]) -> str:
    """up, degraded, down or unknown for a service dict from ``services.list`` or ``service.updated``."""
    state = svc.get("state") or (svc.get("health") or {}).get("state") or "unknown"
    if svc.get("usable") is False and state == "up":
        state = "degraded"
    return str(state) if str(state) in STATE_SYMBOLS else "unknown"


def describe_error(err: BaseException) -> str:
    """One sentence for an exception from Blender or the file system, without a trailing full stop."""
    text = str(err).strip().removeprefix("Error: ").strip().rstrip(".")
    return text or type(err).__name__


def job_of(payload: Any) -> dict[str, Any]:
    """The job dict in a ``job.updated`` notification (``{"job": {...}}``) or a jobs.* reply (the job itself)."""
    if isinstance(payload, dict):
        inner = payload.get("job")
        return inner if isinstance(inner, dict) else payload
    return {}


class AddonSession:
    """Connection, services, tasks and tracked jobs of one Blender session; ``tick()`` is the timer callback."""

    def __init__(self, host: TimelineHost, client_name: str = "blender", import_retry_s: float = IMPORT_RETRY_S) -> None:
        self.host = host
        self.import_retry_s = import_retry_s
        self.client_name = client_name
        self.client: rpc.ApiClient | None = None
        self.book = JobBook()
        self.services: dict[str, dict[str, Any]] = {}
        self.tasks: list[TaskSpec] = []
        self.workflows: list[WorkflowSpec] = []
        self.launches = LaunchBook()
        self.state, self.message = rpc.STOPPED, "Not connected."
        self.tick_count, self.tick_last, self.tick_max = 0, 0.0, 0.0
        self._seen_version = -1
        self._dropped = 0
        self._retry_at: dict[str, float] = {}  # key -> when a failed import may be tried again (monotonic)

    # ---- commands from operators ------------------------------------------------------------------------
    def connect(self, host: str, port: int, token: str = "", token_file: str = "") -> None:
        """(Re)connect with these settings; the outcome arrives through ``tick()``."""
        self.disconnect()
        self.client = rpc.ApiClient(host, port, token=token or None, token_file=token_file or None,
                                    client_name=self.client_name, topics=TOPICS).start()
        self.state, self.message = rpc.CONNECTING, f"Connecting to {host}:{port}…"

    def disconnect(self) -> None:
        """Close the connection."""
        if self.client is not None:
            self.client.close()
            self.client = None
        self.state, self.message = rpc.STOPPED, "Not connected."

    @property
    def connected(self) -> bool:
        """True while the hello has succeeded and the connection is up."""
        return self.client is not None and self.client.connected

    def task(self, name: str) -> TaskSpec | None:
        """The schema of a task by name."""
        return next((t for t in self.tasks if t.name == name), None)

    def submit(self, rec: Tracked, params: dict[str, Any], inputs: list[str], backend: str = "auto") -> None:
        """Send ``jobs.submit`` for a tracked job; the reply arrives through ``tick()``."""
        if self.client is None:
            self.book.rejected(rec.key, "Backlot is not connected; press Connect first.")
            self.host.update_placeholder(rec)
            return
        self.client.call_async("jobs.submit", {"task": rec.task, "prompt": rec.prompt, "params": params,
                                               "inputs": inputs, "backend": backend or "auto"},
                               tag=("submit", rec.key))

    def cancel(self, job_id: str) -> None:
        """Ask Backlot to cancel a job."""
        if self.client is not None:
            self.client.call_async("jobs.cancel", {"job": job_id}, tag=("cancel", job_id))

    def start_backend(self, name: str) -> None:
        """Ask Backlot to start a launch entry; it shows as starting at once, the answer arrives through ``tick()``."""
        if self.client is None:
            return
        self.launches.asking(name)
        self.book.version += 1
        self.client.call_async("launch.start", {"names": [name]}, tag=("launch-start", name))

    def refresh(self) -> None:
        """Ask for services, launch entries, tasks and the news of every watched job."""
        if self.client is None:
            return
        self.client.call_async("services.list", {}, tag=("services",))
        self.client.call_async("launch.list", {}, tag=("launch",))
        self.client.call_async("tasks.list", {}, tag=("tasks",))
        self.refresh_workflows()
        for rec in self.book.watching():
            self.client.call_async("jobs.get", {"job": rec.job}, tag=("job", rec.job))

    def refresh_workflows(self) -> None:
        """Ask for the workflows a job may name (the picker's items); the reply arrives through ``tick()``."""
        if self.client is not None:
            self.client.call_async("workflows.list", {}, tag=("workflows",))

    def reload(self, scenes: dict[str, str]) -> None:
        """A file was opened: track the jobs saved in its scenes and ask Backlot about them."""
        self.book = JobBook()
        for scene, text in scenes.items():
            self.book.load(scene, text)
        self._seen_version = -1
        if self.connected:
            self.refresh()

    # ---- the timer --------------------------------------------------------------------------------------
    def tick(self) -> float:
        """Drain the client's messages, apply them, import at most one result; returns the next interval."""
        t0 = time.perf_counter()
        if self.client is not None:
            for msg in self.client.drain(200):
                self.handle(msg)
            if self.client.dropped != self._dropped:  # messages were lost: ask again
                self._dropped = self.client.dropped
                self.refresh()
        if not self.host.busy():
            now = time.monotonic()
            rec = next((r for r in self.book.records.values()
                        if r.needs_import and self._retry_at.get(r.key, 0.0) <= now), None)
            if rec is not None:
                self._import(rec)
            for scene in list(self.book.dirty_scenes):
                self.host.save_scene(scene, self.book.dumps(scene))
            self.book.dirty_scenes.clear()
        if self.book.version != self._seen_version:
            self._seen_version = self.book.version
            self.host.redraw()
        self.tick_last = time.perf_counter() - t0
        self.tick_max = max(self.tick_max, self.tick_last)
        self.tick_count += 1
        return 0.15

    def _import(self, rec: Tracked) -> None:
        choice = choose_output(rec.outputs, rec.output)
        if choice is None:
            self.book.mark_imported(rec, [], "The job finished without a result Blender can use.")
            return
        try:
            names = self.host.import_result(rec, *choice)
        except Exception as err:  # noqa: BLE001  (a missing file, a Blender that lacks sound, an API change)
            log.warning("could not import %s (try %d): %s", choice[1], rec.import_tries + 1, err)
            self.book.import_failed_once(rec, f"Could not import {choice[1]}: {describe_error(err)}.")
            self._retry_at[rec.key] = time.monotonic() + self.import_retry_s
            self.host.update_placeholder(rec)
            return
        self._retry_at.pop(rec.key, None)
        self.book.mark_imported(rec, names)

    def import_again(self, key: str) -> bool:
        """The panel's "Import Again": place a finished job's result again; False when there is none to place."""
        rec = self.book.get(key)
        if rec is None or rec.state != "succeeded":
            return False
        self.book.import_again(rec)
        self._retry_at.pop(key, None)
        return True

    def handle(self, msg: rpc.Message) -> None:
        """Apply one message from the client."""
        if isinstance(msg, rpc.StateChanged):
            self.state, self.message = msg.state, msg.message
            self.book.version += 1
            if msg.state == rpc.CONNECTED and self.client is not None:
                self.client.call_async("events.subscribe", {"topics": [PLACE_TOPIC]}, tag=("place",))
                self.client.call_async("events.subscribe", {"topics": [LAUNCH_TOPIC]}, tag=("launch-topic",))
                self.refresh()
        elif isinstance(msg, rpc.Notification):
            if msg.method == "job.updated" and isinstance(msg.params, dict):
                self._job(job_of(msg.params))
            elif msg.method == PLACE_TOPIC and isinstance(msg.params, dict):
                self._sent(msg.params)
            elif msg.method == LAUNCH_TOPIC and self.launches.apply(msg.params):
                self.book.version += 1
            elif msg.method == "service.updated" and isinstance(msg.params, dict):
                svc = msg.params.get("service", msg.params)
                if isinstance(svc, dict) and svc.get("id"):
                    self.services[str(svc["id"])] = {**self.services.get(str(svc["id"]), {}), **svc}
                    self.book.version += 1
        elif isinstance(msg, rpc.Reply):
            self._reply(msg)

    def _sent(self, place: dict[str, Any]) -> None:
        """Backlot sent a file: place it at the playhead on a free channel (the tick imports it, with retries)."""
        scene, frame, fps = self.host.playhead()
        rec = self.book.add_sent(scene, place, frame, fps)
        if rec is None:
            log.warning("Backlot sent %r (%s), which Blender cannot place", place.get("path"), place.get("mime"))

    def _job(self, job: dict[str, Any]) -> None:
        rec = self.book.apply(job)
        if rec is not None:
            self._settle(rec)

    def _settle(self, rec: Tracked) -> None:
        """Show a job's new state on the timeline (its import waits for the tick)."""
        if rec.state == "cancelled" and not rec.imported:
            self.host.remove_placeholder(rec)
            self.book.mark_imported(rec, [])
        elif not rec.needs_import:
            self.host.update_placeholder(rec)

    def _reply(self, msg: rpc.Reply) -> None:
        tag = msg.tag if isinstance(msg.tag, tuple) else (msg.tag,)
        what = tag[0] if tag else None
        if what == "launch-start":
            self.launches.answered(tag[1], msg.result, msg.error.message if msg.error is not None else "")
            self.book.version += 1
        elif what == "submit":
            if msg.error is not None:
                rec = self.book.rejected(tag[1], f"Backlot refused the job: {msg.error.message}")
                if rec is not None:
                    self.host.update_placeholder(rec)
                return
            rec = self.book.accepted(tag[1], job_of(msg.result))
            if rec is not None:
                self._settle(rec)
        elif msg.error is not None:
            self._failed_reply(what, tag, msg.error)
        elif what == "services":
            items = msg.result.get("services", []) if isinstance(msg.result, dict) else msg.result or []
            self.services = {str(s["id"]): s for s in items if isinstance(s, dict) and s.get("id")}
            self.book.version += 1
        elif what == "tasks":
            self.tasks = parse_tasks(msg.result)
            self.book.version += 1
        elif what == "workflows":
            self.workflows = parse_workflows(msg.result)
            self.book.version += 1
        elif what == "launch":
            self.launches.replace(msg.result)
            self.book.version += 1
        elif what == "job":
            self._job(job_of(msg.result))

    def _failed_reply(self, what: Any, tag: tuple[Any, ...], error: rpc.ClientError) -> None:
        if what == "job" and error.code == rpc.UNKNOWN_JOB:
            rec = self.book.by_job(tag[1])
            if rec is not None:
                rec.state, rec.message = "interrupted", "Backlot no longer knows this job."
                self.book.mark_imported(rec, [])
                self.host.update_placeholder(rec)
        elif what == "cancel":
            self.message = f"Cancel failed: {error.message}"
            self.book.version += 1
        elif what in ("launch", "launch-topic") and error.code in (rpc.METHOD_NOT_FOUND, rpc.INVALID_PARAMS):
            log.debug("this Backlot launches no backends: %s", error.message)  # one from before the launcher
        elif error.code != rpc.NOT_CONNECTED:
            log.warning("backlot %s failed: %s", what, error.message)

    def service_rows(self) -> list[tuple[str, str, str]]:
        """(symbol, id, state) per service, for the panel."""
        rows = [(STATE_SYMBOLS[service_state(s)], sid, service_state(s)) for sid, s in self.services.items()]
        return sorted(rows, key=lambda r: r[1])
