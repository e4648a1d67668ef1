"""A non-modal window with everything about one job: route, attempts with their reasons, error detail, outputs."""
from __future__ import annotations

import json

from PySide6.QtCore import Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout, QWidget

from backlot.services.models import Job
from backlot.widgets.job_states import state_look


def details_text(job: Job) -> str:
    """The job as plain text for people: the sentences first, the raw detail last."""
    symbol, word, _ = state_look(job)
    status, route, error = job.status, job.route, job.error
    lines = [f"Job #{job.seq} ({job.id}): {job.task}  {symbol} {word}",
             f"Prompt: {job.prompt or '–'}",
             f"Parameters: {json.dumps(job.params, sort_keys=True)}",
             f"Inputs: {', '.join(job.inputs) or '–'}",
             f"Backend asked: {job.requested_backend}; ran on: {job.routed_to or '–'}",
             f"Status: {status.message or status.code.value}", "",
             f"Route: {route.explain() if route is not None else '–'}"]
    if route is not None:
        lines += [f"  skipped {service}: {why}" for service, why in route.skipped]
        if route.note:
            lines.append(f"  note: {route.note}")
    lines += ["", f"Attempts: {len(job.attempts)}"]
    for a in job.attempts:
        outcome = a.outcome or "under way"
        lines.append(f"  {a.n}. {a.backend}: {outcome}" + (f" — {a.message}" if a.message else ""))
    if error is not None:
        lines += ["", f"Error: {error.message} ({error.code})"]
        if error.detail:
            lines += ["Detail:", json.dumps(error.detail, indent=2, sort_keys=True, default=str)]
    if job.outputs:
        lines += ["", "Outputs:"] + [f"  {o.path}  ({o.mime}, {o.bytes} bytes)" for o in job.outputs]
    return "\n".join(lines)


class JobDetailsDialog(QDialog):
    """Shows ``details_text`` for one job and follows its updates; non-modal (``show()``, never ``exec()``)."""

    def __init__(self, job: Job, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModal(False)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(640, 420)
        self._on_job(job)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """Show the latest snapshot of the job."""
        self.setWindowTitle(f"Job #{job.seq} — {job.task}")
        self.text.setPlainText(details_text(job))


class JobDetailsPanel(QWidget):
    """``details_text`` of the job selected in the table, beside it on the Queue page; follows its updates."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("job-details")
        self.job_id: str | None = None
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("Select a job to see its route, attempts, parameters and outputs.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """The selected job, or a newer snapshot of it."""
        self.job_id = job.id
        scroll = self.text.verticalScrollBar().value()
        self.text.setPlainText(details_text(job))
        self.text.verticalScrollBar().setValue(scroll)
