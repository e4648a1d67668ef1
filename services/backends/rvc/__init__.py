"""RVC (voice conversion) over the shared Gradio transport; the signature is read from ``/config``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.gradio.probe import health
from backlot.services.backends.rvc.options import RvcOptions
from backlot.services.backends.rvc.probe import KIND, TASKS, match
from backlot.services.backends.spec import BackendSpec
from backlot.services.models import ServiceRecord


def _adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> Backend:
    from backlot.services.backends.rvc.adapter import RvcBackend

    return RvcBackend(record, session, default_voice=RvcOptions.of(options).voice)


SPEC = BackendSpec(kind=KIND, title="RVC", default_ports=(5050,), gradio_match=match, health_check=health,
                   tasks=TASKS, adapter=_adapter)
