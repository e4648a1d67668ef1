"""The one list of backend kinds, and everything the core derives from it.

Adding a kind is adding its package's ``SPEC`` to ``BUILTIN`` (or ``register()`` at run time, as the
extra-kind test does); no other core module changes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp

from backlot.services.backends import audioldm, comfyui, gradio, llm, rvc, wan2gp
from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.spec import BackendSpec, Fingerprint
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.models import HealthSample, ServiceRecord

BUILTIN: tuple[BackendSpec, ...] = (comfyui.SPEC, wan2gp.SPEC, rvc.SPEC, audioldm.SPEC, llm.SPEC, gradio.SPEC)
_extra: list[BackendSpec] = []


def specs() -> tuple[BackendSpec, ...]:
    """Every known kind, built-in first."""
    return (*BUILTIN, *_extra)


def register(spec: BackendSpec) -> Callable[[], None]:
    """Add a kind at run time; returns the function that removes it again."""
    if spec.kind in kinds():
        raise ValueError(f"a backend kind named {spec.kind!r} is already registered")
    _extra.append(spec)

    def unregister() -> None:
        if spec in _extra:
            _extra.remove(spec)

    return unregister


def kinds() -> tuple[str, ...]:
    """Kind names, in registry order."""
    return tuple(str(s.kind) for s in specs())


def spec_for(kind: str) -> BackendSpec | None:
    """The spec of a kind, or None."""
    return next((s for s in specs() if s.kind == kind), None)


def fingerprints() -> list[Fingerprint]:
    """Every kind's fingerprint probes, in the order they run on a port."""
    return sorted((f for s in specs() for f in s.fingerprints), key=lambda f: f.order)


def default_ports() -> dict[str, tuple[int, ...]]:
    """Usual ports per kind."""
    return {str(s.kind): s.default_ports for s in specs() if s.default_ports}


def default_task_backends(tasks: Iterable[str]) -> dict[str, list[str]]:
    """For each task, the kinds that serve it, first choice first (ties keep registry order)."""
    order = specs()
    out: dict[str, list[str]] = {}
    for task in tasks:
        serving = [(s.tasks[task], i, str(s.kind)) for i, s in enumerate(order) if task in s.tasks]
        out[task] = [kind for _, _, kind in sorted(serving)]
    return out


def default_concurrency() -> dict[str, int]:
    """Jobs Backlot sends to one service of each kind at a time."""
    return {str(s.kind): s.concurrency for s in specs()}


def workflows(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every workflow a job may name, per backend kind (reads files: call off the loop); ``workflows.list``'s list."""
    return [{"kind": str(spec.kind), **w} for spec in specs() if spec.workflows is not None
            for w in spec.workflows(options)]


async def prepare(task: str, params: Mapping[str, Any], options: Mapping[str, Any],
                  services: Iterable[ServiceRecord],
                  session_for: Callable[[str], aiohttp.ClientSession]) -> dict[str, Any]:
    """The job's params as the kinds that serve its task will run them (each kind's ``prepare`` hook, in turn)."""
    out = dict(params)
    known = list(services)
    for spec in specs():
        if spec.prepare is not None and task in spec.tasks:
            out = await spec.prepare(task, out, options, [r for r in known if r.kind == spec.kind], session_for)
    return out


def capabilities(kind: str) -> tuple[str, ...]:
    """Tasks a kind can serve."""
    spec = spec_for(kind)
    return spec.capabilities if spec else ()


def create_adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> Backend | None:
    """The adapter for ``record``'s kind; None for services Backlot cannot drive."""
    spec = spec_for(record.kind)
    if not record.usable or spec is None or spec.adapter is None:
        return None
    return spec.adapter(record, session, options)


async def health_check(session: aiohttp.ClientSession, record: ServiceRecord,
                       timeout: aiohttp.ClientTimeout) -> HealthSample:
    """The health check of ``record``'s kind."""
    spec = spec_for(record.kind)
    if spec is None or spec.health_check is None:
        raise ServiceError(f"no health check for the kind {record.kind!r}", ErrorClass.UNKNOWN, service=record.id)
    return await spec.health_check(session, record, timeout)
