"""AudioLDM: recognised from its Gradio ``/config`` (a text-to-audio event with duration/guidance/seed inputs)."""
from __future__ import annotations

from typing import Any

from backlot.services.backends.gradio.probe import api_names, gradio_protocol, input_labels
from backlot.services.backends.spec import Identity
from backlot.services.models import ServiceKind

KIND = ServiceKind("audioldm")
TASKS = {"sound_effects": 0, "ambient_audio": 0}  # task -> preference (0 = first choice)


def match(config: dict[str, Any]) -> Identity | None:
    """An event taking a duration and two of guidance / seed / candidates; or AudioLDM 2's ``text2audio``."""
    protocol, version, title = gradio_protocol(config), str(config.get("version", "")), str(config.get("title", ""))
    deps = [d for d in config.get("dependencies", []) if isinstance(d, dict)]
    for index, dep in enumerate(deps):
        labels = input_labels(config, list(dep.get("inputs", [])))
        if any("duration" in label for label in labels) and sum(
                any(w in label for w in ("guidance", "seed", "candidate")) for label in labels) >= 2:
            return Identity(KIND, protocol, version, title or "AudioLDM",
                            details={"fn_index": index, "api_name": dep.get("api_name")})
    if "text2audio" in api_names(config):
        return Identity(KIND, protocol, version, title or "AudioLDM 2")
    return None
