"""The settings Wan2GP reads, typed: built once from the plain values the core passes (config.toml keys unchanged)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Wan2gpOptions:
    """``wan2gp_model``: the model_type used when a job names none."""

    model: str | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Wan2gpOptions:
        """From the settings as plain values; a key not there keeps its default."""
        model = options.get("wan2gp_model")
        return cls(str(model) if model else None)
