"""Router: choose a backend for a job and say why, naming every candidate it skipped."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from backlot.services.backends import registry
from backlot.services.backends.needs import Fit, Inventory, Needs
from backlot.services.config import Settings
from backlot.services.models import RouteDecision as RouteDecision
from backlot.services.models import ServiceRecord, ServiceState

GIB = 1024**3
Wants = Mapping[str, Needs | None]  # per backend kind: what a job needs on a service of that kind


@dataclass(frozen=True)
class ServiceHealth:
    """What routing needs to know about one service right now."""

    state: ServiceState
    latency_ms: float | None = None
    queue_depth: int | None = None
    free_vram: int | None = None
    breaker: str = "closed"
    retry_in: float | None = None
    reason: str = ""
    starting: str = ""  # Backlot is starting (or restarting) it: queued jobs wait for it instead of failing over


def gib(n: int | float) -> str:
    """Bytes as "12.3 GiB"."""
    return f"{n / GIB:.1f} GiB"


class Router:
    """Keeps capable, reachable services whose free VRAM covers the estimate; ranks by queue, latency, turn."""

    def __init__(self, settings: Settings, services: Callable[[], Iterable[ServiceRecord]],
                 health: Callable[[str], ServiceHealth | None], load: Callable[[str], int],
                 estimate: Callable[[str, str, dict[str, Any]], tuple[int | None, str]],
                 inventory: Callable[[str], Inventory | None] = lambda sid: None) -> None:
        self.settings = settings
        self._inventory = inventory
        self._services = services
        self._health = health
        self._load = load
        self._estimate = estimate
        self._turn = 0  # round-robin position among equally good services

    def kinds_for(self, task: str, params: dict[str, Any]) -> list[str]:
        """Backend kinds for a task, first choice first (``complexity: high`` puts the kinds made for it first)."""
        kinds: list[str] = list(self.settings.task_backends.get(task, []))
        if params.get("complexity") == "high":
            kinds.sort(key=lambda k: not getattr(registry.spec_for(k), "high_complexity", False))
        return kinds

    def needs_for(self, task: str, params: dict[str, Any]) -> dict[str, Needs | None]:
        """What a job needs on each kind that could run it (blocking: a kind may read workflow files).

        Call it off the loop and hand the answer to ``route(needs=...)``: routing itself reads no files.
        """
        options = self.settings.backend_options()
        return {kind: self._needs(kind, task, params, options) for kind in self.kinds_for(task, params)}

    def route(self, task: str, params: dict[str, Any] | None = None, requested: str = "auto",
              exclude: Iterable[str] = (), *, prefer: str | None = None, advance: bool = True,
              needs: Wants | None = None) -> RouteDecision:
        """Pick a service for ``task``.

        ``prefer``: keep this service when it is among the best (the route a job was shown when it was
        accepted). ``advance=False`` answers without moving the round-robin turn (a preview).
        ``needs``: ``needs_for``'s answer for this job; without it each kind's hook is asked here, which
        may read workflow files (fine in tests and threads, not on the event loop).
        """
        params = params or {}
        kinds = self.kinds_for(task, params)
        excluded = set(exclude)
        if not kinds:
            return RouteDecision(task, None, f"no backend kind is configured for the task {task!r}",
                                 no_capable_backend=True)
        skipped: list[tuple[str, str]] = []
        ok: list[tuple[tuple[Any, ...], str, str]] = []
        unhealthy: list[tuple[tuple[Any, ...], str, str]] = []
        vram_blocked = False
        coming: list[tuple[str, str]] = []  # (service, why) being started by Backlot: worth waiting for
        capable = 0
        wants_by_kind: dict[str, Needs | None] = dict(needs or {})  # per kind: what the job needs there
        lacking: dict[str, tuple[Needs, Inventory]] = {}  # skipped for a missing model or node, with what they have
        for rec in sorted(self._services(), key=lambda r: r.id):
            if requested not in ("auto", "", None) and rec.id != requested:
                continue
            if rec.kind.value not in kinds:
                continue
            if not rec.usable:
                skipped.append((rec.id, rec.hint or "not usable"))
                continue
            if task not in rec.capabilities:
                skipped.append((rec.id, f"cannot run {task}"))
                continue
            if not rec.present:
                skipped.append((rec.id, "no longer found by discovery"))
                continue
            if rec.kind.value not in wants_by_kind:
                wants_by_kind[rec.kind.value] = self._needs(rec.kind.value, task, params,
                                                            self.settings.backend_options())
            wants = wants_by_kind[rec.kind.value]
            inv = self._inventory(rec.id) if wants is not None else None
            fit = wants.fit(inv) if wants is not None else Fit()
            if wants is not None and inv is not None and fit.lacks:
                skipped.append((rec.id, "; ".join(fit.lacks)))
                lacking[rec.id] = (wants, inv)
                continue
            capable += 1
            if rec.id in excluded:
                skipped.append((rec.id, "already failed this job"))
                continue
            h = self._health(rec.id) or ServiceHealth(ServiceState.UNKNOWN)
            queue = max(h.queue_depth or 0, self._load(rec.id))
            rank = (kinds.index(rec.kind.value), fit.substitutes, queue, round((h.latency_ms or 0.0) / 5))
            summary = "; ".join([_summary(h, queue), *fit.notes])
            if h.starting:  # said once, in the reason: not a skip, it is what the job waits for
                coming.append((rec.id, h.starting))
                continue
            if h.breaker == "open":
                why = "circuit open" + (f", retry in {h.retry_in:.0f} s" if h.retry_in is not None else "")
                skipped.append((rec.id, why))
                unhealthy.append(((1, h.retry_in or 0.0, *rank), rec.id, why))
                continue
            if h.state is ServiceState.DOWN:
                why = f"down ({h.reason})" if h.reason else "down"
                skipped.append((rec.id, why))
                unhealthy.append(((0, 0.0, *rank), rec.id, why))
                continue
            need, source = self._estimate(rec.id, task, params)
            if need and h.free_vram is not None and h.free_vram < need:
                skipped.append((rec.id, f"VRAM {gib(h.free_vram)} free < {gib(need)} needed ({source})"))
                vram_blocked = True
                continue
            ok.append((rank, rec.id, summary))
        if capable == 0 and lacking:
            refused = "; ".join(n.refusal({s: i for s, (m, i) in lacking.items() if m is n})
                                for n in {id(m): m for m, _ in lacking.values()}.values())
            return RouteDecision(task, None, refused or "no service has what this job needs", tuple(skipped),
                                 no_capable_backend=True)
        if requested not in ("auto", "", None) and capable == 0:
            return RouteDecision(task, None, f"{requested} is not a known service that can run {task}", tuple(skipped),
                                 no_capable_backend=True)
        if ok:
            best = min(r for r, _, _ in ok)
            equals = [(sid, why) for r, sid, why in ok if r == best]
            preferred = [e for e in equals if e[0] == prefer]
            if preferred:
                sid, why = preferred[0]
            else:
                sid, why = equals[self._turn % len(equals)]
                if advance and len(equals) > 1:
                    self._turn += 1
            if requested not in ("auto", "", None):
                why = f"pinned; {why}"
            return RouteDecision(task, sid, why, tuple(s for s in skipped if s[0] != sid))
        if vram_blocked:
            return RouteDecision(task, None, "waiting for VRAM to free up", tuple(skipped), waiting_for_vram=True)
        if coming:
            sid, why = coming[0]
            return RouteDecision(task, None, f"waiting for {sid}, which Backlot is starting", tuple(skipped),
                                 waiting_for_start=True)
        if unhealthy:
            _, sid, why = min(unhealthy)
            return RouteDecision(task, sid, f"every candidate is unhealthy; trying the least bad ({why})",
                                 tuple(s for s in skipped if s[0] != sid), fallback=True)
        return RouteDecision(task, None, f"no backend that can run {task} is available "
                                         f"(wanted: {', '.join(kinds)})", tuple(skipped), no_capable_backend=capable == 0)


    @staticmethod
    def _needs(kind: str, task: str, params: dict[str, Any], options: Mapping[str, Any]) -> Needs | None:
        """What the job needs on a service of ``kind`` (its spec's ``needs`` hook), or None when it says nothing."""
        spec = registry.spec_for(kind)
        if spec is None or spec.needs is None:
            return None
        return spec.needs(task, params, options)


def _summary(h: ServiceHealth, queue: int) -> str:
    parts = []
    if h.free_vram is not None:
        parts.append(f"{gib(h.free_vram)} free")
    parts.append(f"queue {queue}")
    if h.latency_ms is not None:
        parts.append(f"{h.latency_ms:.0f} ms")
    if h.state is ServiceState.DEGRADED:
        parts.append(f"degraded ({h.reason})" if h.reason else "degraded")
    return ", ".join(parts)
