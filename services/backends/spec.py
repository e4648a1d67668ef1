"""What the core needs to know about one backend kind, declared once in that kind's package.

Home Assistant's integrations are the model: each package under ``services/backends/`` exports a
``SPEC`` (its manifest) and the registry is one list of them. Discovery, health, the router, the
configuration defaults and adapter creation iterate the specs and never name a kind.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.needs import Inventory as Inventory
from backlot.services.backends.needs import Needs as Needs
from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import get_json
from backlot.services.models import HealthSample, ServiceKind, ServiceRecord
from backlot.services.tasks import TaskSpec


@dataclass
class Identity:
    """What a fingerprint found on a base URL."""

    kind: ServiceKind
    protocol: str
    version: str = ""
    title: str = ""
    usable: bool = True
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeContext:
    """One candidate being fingerprinted: the shared probe session, its base URL, the timeout, every spec."""

    session: aiohttp.ClientSession
    base: str
    timeout: aiohttp.ClientTimeout
    specs: Sequence[BackendSpec]


ProbeFn = Callable[[ProbeContext], Awaitable[Identity | None]]
HealthCheck = Callable[[aiohttp.ClientSession, ServiceRecord, aiohttp.ClientTimeout], Awaitable[HealthSample]]
# (record, session provider, settings as plain values) -> adapter, or None when Backlot cannot drive it.
AdapterFactory = Callable[[ServiceRecord, SessionProvider, Mapping[str, Any]], Backend | None]
# (settings as plain values, session provider) -> adapters for services configured rather than discovered.
ConfiguredServices = Callable[[Mapping[str, Any], SessionProvider], list[Backend]]
# (task, the job's params, settings as plain values) -> what such a job may set on this kind beyond the task's
# schema, or None.
JobSchema = Callable[[str, Mapping[str, Any], Mapping[str, Any]], TaskSpec | None]
# What one service has, read at discovery and after a failure for a missing model (network I/O: async).
InventoryFn = Callable[[aiohttp.ClientSession, ServiceRecord, aiohttp.ClientTimeout], Awaitable[Inventory]]
# (task, the job's params, settings as plain values) -> what the job needs on a service of this kind, or None.
# Blocking (it may read workflow files): the manager asks it off the loop, once per job, and routes with the answer.
NeedsFn = Callable[[str, Mapping[str, Any], Mapping[str, Any]], Needs | None]
# A Gradio app's /config -> who it is; kinds served over Gradio declare one (the Gradio probe asks each).
GradioMatcher = Callable[[dict[str, Any]], Identity | None]
# (task, the job's params, settings as plain values, the kind's services, a session per service id) -> the
# params as the kind will run them (a workflow file read once into a snapshot the job names, a UI-format one
# converted); SchemaError when it cannot. Called once per submit, on the loop, before the params are checked:
# every later step (the check, routing, the adapter, a retry) reads what it returns, never the user's file.
PrepareFn = Callable[[str, Mapping[str, Any], Mapping[str, Any], Sequence[ServiceRecord],
                      Callable[[str], aiohttp.ClientSession]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Fingerprint:
    """One cheap request that recognises a kind; lower ``order`` runs first on a port (DESIGN.md's order)."""

    order: int
    probe: ProbeFn


@dataclass(frozen=True)
class BackendSpec:
    """Everything the core needs about one backend kind.

    Every kind says who it is, the tasks it serves, how it is found and checked, and its adapter:
    ``tasks`` maps each task the kind can serve to its preference (0 = first choice), from which
    the default ``task_backends`` table is built. ``health_check`` takes one cheap reading
    (latency, queue depth, VRAM); ``adapter`` makes the driver for a usable record. The hooks
    after ``concurrency`` are optional: only a kind that has the idea declares one.
    """

    kind: ServiceKind
    title: str
    default_ports: tuple[int, ...] = ()
    fingerprints: tuple[Fingerprint, ...] = ()
    gradio_match: GradioMatcher | None = None
    health_check: HealthCheck | None = None
    tasks: Mapping[str, int] = field(default_factory=dict)
    adapter: AdapterFactory | None = None
    concurrency: int = 1
    # Leads the task's kinds when a job asks for ``complexity: high`` (ComfyUI's full graphs over a fast path).
    high_complexity: bool = False
    # Services the kind brings from configuration (cloud LLM models): routable, never probed or polled.
    configured: ConfiguredServices | None = None
    # Releases what the kind holds per event loop (LiteLLM's cached clients); called once at stop.
    shutdown: Callable[[], Awaitable[None]] | None = None
    # Parameters and inputs a job adds for this kind (a ComfyUI workflow's bindings). It may read files, so it
    # is called off the loop; it raises services.tasks.SchemaError for a job the kind cannot take (no such workflow).
    job_schema: JobSchema | None = None
    # Workflow templates a job may name (ComfyUI's), JSON-ready; blocking file reads, so call it off the loop.
    # Takes the settings as plain values (they name the user's workflow folders).
    workflows: Callable[[Mapping[str, Any]], list[dict[str, Any]]] | None = None
    # Models and node classes a service has (cached by the control center) and what a job needs of them: the
    # router skips a service the job's Needs says does not fit, and refuses a job no service can serve. A kind
    # with rules of its own returns its own Needs (and Inventory) subclass: ComfyUI's stand-in checkpoints.
    inventory: InventoryFn | None = None
    needs: NeedsFn | None = None
    prepare: PrepareFn | None = None

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Tasks this kind can run, in the order the package lists them."""
        return tuple(self.tasks)


NOT_THIS = (ErrorClass.CLIENT_ERROR, ErrorClass.BAD_RESPONSE, ErrorClass.HTTP_ERROR)


async def json_or_none(ctx: ProbeContext, path: str, max_bytes: int) -> Any:
    """The JSON at ``base + path``; None when something answers that is not it; connection failures propagate."""
    try:
        body, _ = await get_json(ctx.session, ctx.base + path, timeout=ctx.timeout, max_bytes=max_bytes)
    except ServiceError as err:
        if err.error_class in NOT_THIS:
            return None
        raise
    return body


def int_or_none(x: Any) -> int | None:
    """A JSON number as int; None for anything else (bools included)."""
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
