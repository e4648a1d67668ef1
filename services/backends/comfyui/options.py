"""The settings ComfyUI reads, typed: built once from the plain values the core passes (config.toml keys unchanged)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ComfyUIOptions:
    """``comfyui_checkpoints``, ``workflow_dirs``, and the config and data folders (user and converted workflows)."""

    checkpoints: Mapping[str, str] = field(default_factory=dict)  # template name -> checkpoint when a job names none
    workflow_dirs: tuple[Path, ...] = ()
    config_dir: Path | None = None  # user workflows live in <config_dir>/workflows
    data_path: Path | None = None  # converted workflow files are kept under it

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> ComfyUIOptions:
        """From the settings as plain values; a key not there keeps its default."""
        config, data = options.get("config_dir"), options.get("data_path")
        return cls({str(k): str(v) for k, v in (options.get("comfyui_checkpoints") or {}).items()},
                   tuple(Path(str(d)).expanduser() for d in options.get("workflow_dirs") or ()),
                   Path(str(config)) if config else None, Path(str(data)) if data else None)
