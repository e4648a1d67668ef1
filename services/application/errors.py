"""The errors a use case raises; a front maps each to its own words (a wire code, an exit code, a sentence)."""
from __future__ import annotations

from typing import Any

from backlot.services.backends.comfyui.workflows import TemplateError as WorkflowError
from backlot.services.errors import BacklotError
from backlot.services.jobs.manager import JobError
from backlot.services.jobs.store import StoreError


class NotFound(BacklotError):
    """No job (or other thing) by that reference."""


class Invalid(BacklotError):
    """A request that names something that does not exist (a task, a state): one sentence for the user."""


class CompletionFailed(BacklotError):
    """A text completion did not come back; ``reason``: timeout | no_backend | failed, ``data`` says which job."""

    def __init__(self, message: str, reason: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.data = data


__all__ = ["CompletionFailed", "Invalid", "JobError", "NotFound", "StoreError", "WorkflowError"]
