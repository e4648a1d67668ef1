"""ComfyUI 0.8.0's input definitions for core nodes the stand-in lists but cannot run (data in core_nodes.json).

They make the stand-in's /object_info good enough to convert real UI-format workflows (widget order,
``control_after_generate`` on seeds); a prompt that reaches one of them fails like a node error.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("core_nodes.json")


@cache
def _data() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(DATA.read_text(encoding="utf-8"))
    return loaded


def core_specs(files: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """object_info entries for the listed core nodes, their model pickers filled from ``files`` (folder -> names)."""
    specs = json.loads(json.dumps(_data()))  # a deep copy per answer
    for spec in specs.values():
        for group in spec["input"].values():
            for name, conf in group.items():
                folder = "checkpoints" if name == "ckpt_name" else (
                    "text_encoders" if name.startswith("clip_name") and spec["name"] != "CLIPVisionLoader" else None)
                if folder is None or not isinstance(conf, list):
                    continue
                if conf and conf[0] == "COMBO":
                    conf[1]["options"] = list(files.get(folder, []))
                elif conf and isinstance(conf[0], list):
                    conf[0] = list(files.get(folder, []))
    return specs


def cannot_run(class_type: str) -> Callable[..., Any]:
    """A node function that fails the way a node error does: the stand-in has the spec, not the model."""
    def run(ctx: Any, **inputs: Any) -> Any:
        raise RuntimeError(f"the ComfyUI stand-in cannot run {class_type} (it only lists its inputs)")
    return run


def core_functions() -> dict[str, Callable[..., Any]]:
    """A failing function for every listed core node."""
    return {name: cannot_run(name) for name in _data()}
