"""Wan2GP, driven through its own MCP server (streamable HTTP); its web UI alone is listed as not usable."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.spec import BackendSpec, Fingerprint
from backlot.services.backends.wan2gp.options import Wan2gpOptions
from backlot.services.backends.wan2gp.probe import KIND, TASKS, fingerprint, health, match_webui
from backlot.services.models import ServiceRecord


def _adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> Backend | None:
    if record.protocol != "mcp":
        return None
    from backlot.services.backends.wan2gp.adapter import Wan2gpBackend

    return Wan2gpBackend(record, session, default_model=Wan2gpOptions.of(options).model)


SPEC = BackendSpec(kind=KIND, title="Wan2GP", default_ports=(8000, 8001, 8002),
                   fingerprints=(Fingerprint(30, fingerprint),), gradio_match=match_webui, health_check=health,
                   tasks=TASKS, adapter=_adapter)
