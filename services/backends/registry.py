"""Make the adapter for a discovered service."""
from __future__ import annotations

from services.backends.base import Backend
from services.config import Settings
from services.models import ServiceKind, ServiceRecord
from services.pool import ConnectionPool


def create_adapter(record: ServiceRecord, pool: ConnectionPool, settings: Settings) -> Backend | None:
    """The adapter for ``record``'s kind and protocol; None for services Backlot cannot drive."""
    if not record.usable:
        return None

    def session():  # type: ignore[no-untyped-def]
        return pool.session(record.id)

    if record.kind is ServiceKind.COMFYUI:
        from services.backends.comfyui import ComfyUIBackend

        return ComfyUIBackend(record, session)
    if record.kind is ServiceKind.WAN2GP and record.protocol == "mcp":
        from services.backends.wan2gp import Wan2gpBackend

        return Wan2gpBackend(record, session, default_model=settings.wan2gp_model)
    if record.kind is ServiceKind.RVC:
        from services.backends.rvc import RvcBackend

        return RvcBackend(record, session, default_voice=settings.rvc_voice)
    if record.kind is ServiceKind.AUDIOLDM:
        from services.backends.audioldm import AudioLdmBackend

        return AudioLdmBackend(record, session)
    if record.kind is ServiceKind.LLM:
        from services.backends.llm import LlmBackend

        key = settings.llm_keys.get(record.id) or settings.llm_keys.get(record.host)
        return LlmBackend.for_server(record, session, api_key=key)
    return None
