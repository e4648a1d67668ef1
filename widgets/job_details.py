"""A non-modal window with everything about one job: route, attempts with their reasons, error detail, outputs."""
from __future__ import annotations

import json

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backlot.services.models import Job
from backlot.widgets.job_states import state_look


def raw_detail(job: Job) -> str:
    """The error's raw detail (JSON), or "" when the job has none."""
    error = job.error
    if error is None or not error.detail:
        return ""
    return json.dumps(error.detail, indent=2, sort_keys=True, default=str)


def details_text(job: Job, raw: bool = True) -> str:
    """The job as plain text for people: the sentences first, the raw detail last (``raw``: included)."""
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
        if error.detail and raw:
            lines += ["Detail:", raw_detail(job)]
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
    """The job selected in the table, beside it on the Queue page; follows its updates.

    A failed job's error sentence heads the panel; its raw detail is one click away ("Show details").
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("job-details")
        self.job_id: str | None = None
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.error = QLabel(wordWrap=True, objectName="job-error")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.raw_button = QToolButton(text="Show details", checkable=True, objectName="job-error-raw")
        self.raw_button.setToolTip("The error's raw detail, as the backend gave it")
        self.raw_button.toggled.connect(self._on_raw_toggled)
        self.raw = QPlainTextEdit(readOnly=True, objectName="job-error-detail")
        self.raw.setFont(fixed)
        self.raw.setMaximumHeight(220)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(fixed)
        self.text.setPlaceholderText("Select a job to see its route, attempts, parameters and outputs.")
        head = QHBoxLayout()
        head.addWidget(self.error, 1)
        head.addWidget(self.raw_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.raw)
        layout.addWidget(self.text, 1)
        for w in (self.error, self.raw_button, self.raw):
            w.setVisible(False)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """The selected job, or a newer snapshot of it."""
        if job.id != self.job_id:
            self.raw_button.setChecked(False)  # another job: its raw detail starts folded
        self.job_id = job.id
        scroll = self.text.verticalScrollBar().value()
        self.text.setPlainText(details_text(job, raw=False))
        self.text.verticalScrollBar().setValue(scroll)
        error, raw = job.error, raw_detail(job)
        self.error.setVisible(error is not None)
        self.error.setText(f"✕ {error.message}" if error is not None else "")
        self.raw_button.setVisible(bool(raw))
        if self.raw.toPlainText() != raw:
            self.raw.setPlainText(raw)
        self.raw.setVisible(bool(raw) and self.raw_button.isChecked())

    def _on_raw_toggled(self, on: bool) -> None:
        self.raw_button.setText("Hide details" if on else "Show details")
        self.raw.setVisible(on and bool(self.raw.toPlainText()))
