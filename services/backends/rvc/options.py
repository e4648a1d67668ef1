"""The settings RVC reads, typed: built once from the plain values the core passes (config.toml keys unchanged)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RvcOptions:
    """``rvc_voice``: the voice (.pth) used when a job names none."""

    voice: str | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> RvcOptions:
        """From the settings as plain values; a key not there keeps its default."""
        voice = options.get("rvc_voice")
        return cls(str(voice) if voice else None)
