"""ComfyUI: HTTP + WebSocket API, workflow templates with bindings."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.comfyui.inventory import inventory, needs
from backlot.services.backends.comfyui.onthefly import prepare
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.comfyui.probe import KIND, TASKS, fingerprint, health
from backlot.services.backends.comfyui.workflows import TemplateError, load_all, template_for
from backlot.services.backends.spec import BackendSpec, Fingerprint
from backlot.services.models import ServiceRecord
from backlot.services.tasks import SchemaError, TaskSpec


def _adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> Backend:
    from backlot.services.backends.comfyui.adapter import ComfyUIBackend

    return ComfyUIBackend(record, session, options=ComfyUIOptions.of(options))


def _job_schema(task: str, params: Mapping[str, Any], options: Mapping[str, Any]) -> TaskSpec | None:
    """A job naming a workflow (or a workflow file) may set its bindings (blocking: reads the workflow files)."""
    if not params.get("workflow"):
        return None
    try:
        return template_for(load_all(ComfyUIOptions.of(options)), task, dict(params)).schema()
    except TemplateError as err:  # a UI-format file too: the instance converts it first (onthefly.prepare)
        raise SchemaError(str(err)) from err


def _workflows(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Templates a job may name, built-in and the user's (blocking: reads the workflow files)."""
    return [t.to_dict() for t in load_all(ComfyUIOptions.of(options)).values()]


SPEC = BackendSpec(
    kind=KIND, title="ComfyUI", default_ports=(8188, 8189, 8190),
    fingerprints=(Fingerprint(10, fingerprint),), health_check=health,
    tasks=TASKS,
    adapter=_adapter, concurrency=2, high_complexity=True,
    job_schema=_job_schema, workflows=_workflows, inventory=inventory, needs=needs, prepare=prepare)
