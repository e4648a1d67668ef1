"""LLMs through LiteLLM (imported lazily): local OpenAI-compatible and Ollama servers, and configured cloud models."""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from backlot.services.backends.base import Backend, SessionProvider
from backlot.services.backends.llm.options import LlmOptions
from backlot.services.backends.llm.probe import KIND, TASKS, health, ollama, openai
from backlot.services.backends.spec import BackendSpec, Fingerprint
from backlot.services.models import ServiceRecord


def _adapter(record: ServiceRecord, session: SessionProvider, options: Mapping[str, Any]) -> Backend:
    from backlot.services.backends.llm.adapter import LlmBackend

    keys = LlmOptions.of(options).keys
    return LlmBackend.for_server(record, session, api_key=keys.get(record.id) or keys.get(record.host))


def _configured(options: Mapping[str, Any], session: SessionProvider) -> list[Backend]:
    settings = LlmOptions.of(options)
    if not settings.models:
        return []
    from backlot.services.backends.llm.adapter import cloud_backends

    return list(cloud_backends(settings.models, session, settings.keys))


async def _shutdown() -> None:
    adapter = sys.modules.get("backlot.services.backends.llm.adapter")  # never imported: nothing of litellm's to close
    if adapter is not None:
        await adapter.close_litellm_clients()


SPEC = BackendSpec(kind=KIND, title="LLM server", default_ports=(11434, 1234, 8080),
                   fingerprints=(Fingerprint(40, openai), Fingerprint(50, ollama)), health_check=health,
                   tasks=TASKS, adapter=_adapter, concurrency=4,
                   configured=_configured, shutdown=_shutdown)
