"""Wan2GP job events (``{kind, timestamp, data}``) as normalized statuses, each event used once."""
from __future__ import annotations

from typing import Any

from backlot.services.backends.base import JobStatus, StatusCode


class EventTracker:
    """Reads successive ``wangp_get_job`` snapshots; remembers the progress so far and the errors reported.

    A snapshot holds the last ``event_limit`` events, so polls overlap: an event is new when its timestamp is
    later than the newest seen, or equal to it and beyond the ones already counted at that instant.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.errors: list[dict[str, Any]] = []
        self.fraction: float | None = None
        self.step: int | None = None
        self.total: int | None = None
        self.unit = ""
        self.started = False
        self._newest = float("-inf")
        self._seen_at_newest = 0

    def new_events(self, events: list[Any]) -> list[dict[str, Any]]:
        """The events of this snapshot not seen in earlier ones (oldest first)."""
        fresh: list[dict[str, Any]] = []
        stamps: list[float] = []
        same = 0
        for event in events:
            if not isinstance(event, dict):
                continue
            stamp = _float(event.get("timestamp"))
            stamps.append(stamp)
            if stamp < self._newest:
                continue
            if stamp == self._newest:
                same += 1
                if same <= self._seen_at_newest:
                    continue
            fresh.append(event)
        if stamps and max(stamps) >= self._newest:
            newest = max(stamps)
            count = stamps.count(newest)
            self._seen_at_newest = count if newest > self._newest else max(count, self._seen_at_newest)
            self._newest = newest
        return fresh

    def statuses(self, events: list[Any]) -> list[JobStatus]:
        """Statuses for the new events; a run of progress events in one phase gives only its latest."""
        out: list[JobStatus] = []
        last_phase: str | None = None
        for event in self.new_events(events):
            status, phase = self._apply(event)
            if status is None:
                continue
            if phase is not None and phase == last_phase:
                out[-1] = status  # a poll can bring many steps; the newest says it all
            else:
                out.append(status)
            last_phase = phase
        return out

    def absorb(self, events: list[Any]) -> None:
        """Take in events without reporting them (re-attaching: only where the job stands matters)."""
        for event in self.new_events(events):
            self._apply(event)

    def summary(self, message: str) -> JobStatus:
        """Where the job stands: QUEUED before its first event, else its latest progress."""
        if not self.started and self.fraction is None:
            return JobStatus(StatusCode.QUEUED, message=f"{message}; waiting in Wan2GP's queue", remote_ref=self.job_id)
        return self._status(message)

    def _status(self, message: str) -> JobStatus:
        code = StatusCode.PROGRESS if self.fraction is not None else StatusCode.RUNNING
        return JobStatus(code, fraction=self.fraction, step=self.step, total=self.total, unit=self.unit,
                         message=message, remote_ref=self.job_id)

    def _apply(self, event: dict[str, Any]) -> tuple[JobStatus | None, str | None]:
        """Update the state from one event; the status to report (if any) and its progress phase."""
        kind, data = event.get("kind"), event.get("data")
        if kind == "started":
            self.started = True
            return self._status("running on Wan2GP"), None
        if kind == "progress" and isinstance(data, dict):
            self.started = True
            percent = data.get("progress")
            if isinstance(percent, (int, float)) and not isinstance(percent, bool):
                self.fraction = max(0.0, min(1.0, float(percent) / 100))
            self.step, self.total = _int(data.get("current_step")), _int(data.get("total_steps"))
            phase = str(data.get("phase") or "")
            # Wan2GP sends unit null for denoising; those steps are sampler steps
            self.unit = str(data.get("unit") or ("steps" if phase == "denoising" else ""))
            return self._status(str(data.get("status") or phase or "working")), phase or "progress"
        if kind == "status":
            text = data if isinstance(data, str) else _text(data)
            return (self._status(text), None) if text else (None, None)
        if kind == "error" and isinstance(data, dict):
            self.errors.append(data)
        return None, None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("status") or data.get("message") or data.get("text") or "")
    return "" if data is None else str(data)
