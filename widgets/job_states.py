"""How a job's state reads in the window: a symbol, a word and a colour (never the colour alone), per UI.md."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GREEN, AMBER, RED, GREY, BLUE = "#2e9d4f", "#c98a12", "#cc3b3b", "#8a8a8a", "#2f7fd0"
# filled: came out well; half: under way; empty: ended without a result; dotted: not started.
STATES: dict[str, tuple[str, str, str]] = {
    "queued": ("◌", "queued", GREY),
    "running": ("◐", "running", BLUE),
    "cancelling": ("◐", "cancelling", AMBER),
    "succeeded": ("●", "done", GREEN),
    "failed": ("○", "failed", RED),
    "cancelled": ("○", "cancelled", GREY),
    "interrupted": ("○", "interrupted", RED),
}


def state_look(job: Mapping[str, Any]) -> tuple[str, str, str]:
    """(symbol, word, colour) for a job snapshot; a running job asked to stop reads "cancelling"."""
    state = str(job.get("state", "queued"))
    if job.get("cancel_requested") and state in ("queued", "running"):
        state = "cancelling"
    return STATES.get(state, ("◌", state, GREY))
