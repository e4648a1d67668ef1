"""RVC WebUI: recognised from its Gradio ``/config`` (title or its conversion API names)."""
from __future__ import annotations

from typing import Any

from backlot.services.backends.gradio.probe import api_names, gradio_protocol
from backlot.services.backends.spec import Identity
from backlot.services.models import ServiceKind

KIND = ServiceKind("rvc")
TASKS = {"voice_conversion": 0}  # task -> preference (0 = first choice)


def match(config: dict[str, Any]) -> Identity | None:
    """Title ``RVC WebUI``, or an ``infer_convert`` / ``infer_change_voice`` event."""
    title = str(config.get("title", ""))
    if title == "RVC WebUI" or {"infer_convert", "infer_change_voice"} & api_names(config):
        return Identity(KIND, gradio_protocol(config), str(config.get("version", "")), title or "RVC WebUI")
    return None
