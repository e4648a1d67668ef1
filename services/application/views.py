"""What the use cases return: frozen views whose ``to_dict`` is the one wire form of each."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backlot.services.models import BreakerSnapshot, GpuSample, HealthSample, ServiceRecord


@dataclass(frozen=True)
class ServiceView:
    """A known service with its health now: ``services.list``'s row."""

    record: ServiceRecord
    state: str = "unknown"
    latency_ms: float | None = None
    queue_depth: int | None = None
    breaker: BreakerSnapshot | None = None
    success_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record's fields plus state, latency, queue, breaker and success rate."""
        return {**self.record.to_dict(), "state": self.state, "latency_ms": self.latency_ms,
                "queue_depth": self.queue_depth, "breaker": None if self.breaker is None else self.breaker.to_dict(),
                "success_rate": self.success_rate}


def sample_dict(sample: HealthSample) -> dict[str, Any]:
    """One health check, JSON-ready."""
    return {"at": sample.at, "ok": sample.ok, "latency_ms": sample.latency_ms, "error_class": sample.error_class,
            "message": sample.message, "queue_depth": sample.queue_depth,
            "vram": [{"device": v.device, "total": v.total, "free": v.free, "source": v.source} for v in sample.vram]}


def gpu_dict(gpu: GpuSample) -> dict[str, Any]:
    """One local GPU reading, JSON-ready."""
    return {"index": gpu.index, "name": gpu.name, "total": gpu.total, "used": gpu.used,
            "utilization": gpu.utilization, "at": gpu.at}


@dataclass(frozen=True)
class VramPoint:
    """One point of a VRAM graph: series key, label, wall time, bytes used."""

    key: str
    label: str
    at: float
    used: float


def sample_vram(sample: HealthSample) -> list[VramPoint]:
    """What a service reported of its own VRAM use (none when it reports none)."""
    if not sample.vram:
        return []
    return [VramPoint(f"service:{sample.service_id}", f"{sample.service_id} (reported)", sample.at,
                      float(sum(v.used for v in sample.vram)))]


def gpu_vram(gpus: tuple[GpuSample, ...], now: float) -> list[VramPoint]:
    """Each local GPU's use, and each service's share of it where NVML names its process."""
    out = []
    for gpu in gpus:
        at = gpu.at or now
        out.append(VramPoint(f"gpu:{gpu.index}", f"GPU {gpu.index} {gpu.name} (local, NVML)", at, float(gpu.used)))
        out += [VramPoint(f"service:{p.service_id}", f"{p.service_id} (NVML)", at, float(p.used_bytes))
                for p in gpu.processes if p.service_id and p.used_bytes is not None]
    return out


@dataclass(frozen=True)
class ServiceHealthView:
    """One monitored service: state, breaker and last check."""

    state: str
    breaker: BreakerSnapshot
    last: HealthSample | None

    def to_dict(self) -> dict[str, Any]:
        """``health.snapshot``'s entry for one service."""
        return {"state": self.state, "breaker": self.breaker.to_dict(),
                "last": None if self.last is None else sample_dict(self.last)}


@dataclass(frozen=True)
class HealthSnapshot:
    """Every monitored service's health and the local GPUs, at one moment."""

    services: Mapping[str, ServiceHealthView]
    gpus: tuple[GpuSample, ...]
    at: float

    def to_dict(self) -> dict[str, Any]:
        """``health.snapshot``'s answer."""
        return {"services": {sid: h.to_dict() for sid, h in sorted(self.services.items())},
                "gpus": [gpu_dict(g) for g in self.gpus], "at": self.at}

    @property
    def checked(self) -> bool:
        """Every watched service has had at least one check."""
        return all(h.last is not None for h in self.services.values())


@dataclass(frozen=True)
class DiscoveryReport:
    """What one discovery round found."""

    records: tuple[ServiceRecord, ...]
    duration_ms: float
    candidates: int
    timed_out: tuple[str, ...]
    unanswered: tuple[tuple[str, str], ...] = ()  # (URL as given, why nothing was found there)

    def to_dict(self) -> dict[str, Any]:
        """``services.discover``'s answer."""
        return {"services": [r.to_dict() for r in self.records], "duration_ms": round(self.duration_ms, 1),
                "candidates": self.candidates, "timed_out": list(self.timed_out)}


@dataclass(frozen=True)
class RouteExplanation:
    """Where a job like this would go now, and why."""

    decision: dict[str, Any]
    text: str
    no_capable_backend: bool

    def to_dict(self) -> dict[str, Any]:
        """``route.explain``'s answer."""
        return {**self.decision, "no_capable_backend": self.no_capable_backend}


@dataclass(frozen=True)
class JobOutputs:
    """A job's output files; ``content`` (base64) only where it was asked for."""

    job: str
    state: str
    outputs: tuple[Mapping[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """``jobs.outputs``'s answer."""
        return {"job": self.job, "state": self.state, "outputs": [dict(o) for o in self.outputs]}


@dataclass(frozen=True)
class Preview:
    """The latest preview image of a running job."""

    job: str
    path: Path
    mime: str
    content: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """``jobs.preview``'s answer (content as base64)."""
        import base64

        return {"job": self.job, "path": str(self.path), "mime": self.mime, "bytes": len(self.content),
                "content": base64.b64encode(self.content).decode("ascii")}


@dataclass(frozen=True)
class BlenderSend:
    """A job's output sent to the connected Blender addons (``addons`` 0: none is connected, nothing was sent)."""

    job: str
    seq: int
    path: Path
    mime: str
    addons: int

    @property
    def sentence(self) -> str:
        """What the window says: ``Sent to Blender (1 addon)`` or why nothing was sent."""
        if not self.addons:
            return NO_BLENDER
        return f"Sent to Blender ({self.addons} addon{'' if self.addons == 1 else 's'})"

    def to_dict(self) -> dict[str, Any]:
        """``blender.send``'s answer."""
        return {"job": self.job, "seq": self.seq, "path": str(self.path), "mime": self.mime, "addons": self.addons,
                "sent": self.addons > 0, "message": self.sentence}


NO_BLENDER = ("No Blender is connected: open Blender with the Backlot addon and press Connect in its panel "
              "(Sequencer sidebar › Backlot)")


@dataclass(frozen=True)
class Completion:
    """A text job's answer."""

    text: str
    job: str
    seq: int
    backend: str | None

    def to_dict(self) -> dict[str, Any]:
        """``llm.complete``'s answer."""
        return {"text": self.text, "job": self.job, "seq": self.seq, "backend": self.backend}


@dataclass(frozen=True)
class KeyPresence:
    """Whether Backlot has a key for an LLM provider, and where from (no network is used)."""

    provider: str
    where: str  # "settings", "environment" or "" (none)
    missing: tuple[str, ...] = ()  # environment variables that would hold it

    @property
    def present(self) -> bool:
        """A key is there."""
        return bool(self.where)

    def sentence(self) -> str:
        """One line for the settings dialog."""
        if self.where == "settings":
            return "● key set in Backlot's settings"
        if self.where == "environment":
            return "● key in the environment"
        return f"○ no key (set {' or '.join(self.missing)})" if self.missing else "○ no key"


@dataclass(frozen=True)
class KeyCheck:
    """The answer of an on-demand key check: valid, invalid key, unreachable, … or why none was made."""

    provider: str
    result: str
    checked: bool

    def sentence(self) -> str:
        """One line for the settings dialog."""
        if not self.checked:
            return self.result
        return f"{'●' if self.result == 'valid' else '○'} {self.result} (checked now)"


@dataclass(frozen=True)
class ImportedWorkflow:
    """A workflow file imported into the user's folder, with what was inferred from it."""

    name: str
    wanted: str  # the name asked for (or the file's), before any clash
    workflow_path: Path
    bindings_path: Path
    converted: bool
    task: str
    task_guessed: bool
    bindings: Mapping[str, tuple[tuple[str, str], ...]]
    missing: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """``workflows.import``'s answer (and ``backlot workflows import --json``)."""
        return {"name": self.name, "workflow": str(self.workflow_path), "bindings_file": str(self.bindings_path),
                "converted": self.converted, "task": self.task, "task_guessed": self.task_guessed,
                "bindings": {k: [list(b) for b in v] for k, v in self.bindings.items()},
                "not_found": list(self.missing), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], wanted: str = "") -> ImportedWorkflow:
        """The view back from its wire form (the command line reads the instance's answer)."""
        return cls(str(data["name"]), wanted or str(data["name"]), Path(data["workflow"]), Path(data["bindings_file"]),
                   bool(data["converted"]), str(data["task"]), bool(data["task_guessed"]),
                   {k: tuple((str(n), str(i)) for n, i in v) for k, v in data["bindings"].items()},
                   tuple(data["not_found"]), tuple(data["notes"]))
