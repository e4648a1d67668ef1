"""How a job's state reads in the window: a symbol, a word and a colour (never the colour alone), per UI.md."""
from __future__ import annotations

from backlot.services.models import Job, JobState

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


def state_look(job: Job) -> tuple[str, str, str]:
    """(symbol, word, colour) for a job snapshot; a running job asked to stop reads "cancelling"."""
    state = job.state.value
    if job.cancel_requested and job.state in (JobState.QUEUED, JobState.RUNNING):
        state = "cancelling"
    return STATES.get(state, ("◌", state, GREY))
