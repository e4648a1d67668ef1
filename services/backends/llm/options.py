"""The settings the LLM kind reads, typed: built once from the plain values the core passes (config.toml keys unchanged)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr


@dataclass(frozen=True)
class LlmOptions:
    """``llm_models`` (cloud models to offer) and ``llm_keys`` (per provider, or per server id or host)."""

    models: tuple[str, ...] = ()
    keys: Mapping[str, SecretStr] = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> LlmOptions:
        """From the settings as plain values; a key not there keeps its default."""
        keys = options.get("llm_keys") or {}
        return cls(tuple(str(m) for m in options.get("llm_models") or ()),
                   {str(k): v if isinstance(v, SecretStr) else SecretStr(str(v)) for k, v in keys.items()})
