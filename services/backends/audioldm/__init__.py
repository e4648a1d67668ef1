"""AudioLDM (sound effects, ambience) over the shared Gradio transport."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backlot.services.backends.audioldm.probe import KIND, TASKS, match
from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.gradio.probe import health
from backlot.services.backends.spec import BackendSpec
from backlot.services.models import ServiceRecord


def _adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> Backend:
    from backlot.services.backends.audioldm.adapter import AudioLdmBackend

    return AudioLdmBackend(record, session)


SPEC = BackendSpec(kind=KIND, title="AudioLDM", gradio_match=match, health_check=health, tasks=TASKS,
                   adapter=_adapter)
