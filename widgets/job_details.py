"""A non-modal window with everything about one job: route, attempts with their reasons, error detail, outputs."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout, QWidget

from widgets.job_states import state_look


def details_text(job: Mapping[str, Any]) -> str:
    """The job as plain text for people: the sentences first, the raw detail last."""
    symbol, word, _ = state_look(job)
    status, route, error = job.get("status") or {}, job.get("route") or {}, job.get("error")
    lines = [f"Job #{job.get('seq')} ({job.get('id')}): {job.get('task')}  {symbol} {word}",
             f"Prompt: {job.get('prompt') or '–'}",
             f"Parameters: {json.dumps(job.get('params') or {}, sort_keys=True)}",
             f"Inputs: {', '.join(job.get('inputs') or []) or '–'}",
             f"Backend asked: {job.get('requested_backend', 'auto')}; ran on: {job.get('routed_to') or '–'}",
             f"Status: {status.get('message') or status.get('code') or '–'}", "",
             f"Route: {route.get('explanation') or '–'}"]
    lines += [f"  skipped {s.get('service')}: {s.get('why')}" for s in route.get("skipped") or []]
    if route.get("note"):
        lines.append(f"  note: {route['note']}")
    lines += ["", f"Attempts: {job.get('attempts', 0)}"]
    for a in job.get("attempt_log") or []:
        outcome = a.get("outcome") or "under way"
        lines.append(f"  {a.get('n')}. {a.get('backend')}: {outcome}" + (f" — {a['message']}" if a.get("message") else ""))
    if error:
        lines += ["", f"Error: {error.get('message', '')} ({error.get('code', '')})"]
        if error.get("detail"):
            lines += ["Detail:", json.dumps(error["detail"], indent=2, sort_keys=True, default=str)]
    if job.get("outputs"):
        lines += ["", "Outputs:"] + [f"  {o.get('path')}  ({o.get('mime')}, {o.get('bytes')} bytes)"
                                     for o in job["outputs"]]
    return "\n".join(lines)


class JobDetailsDialog(QDialog):
    """Shows ``details_text`` for one job and follows its updates; non-modal (``show()``, never ``exec()``)."""

    def __init__(self, job: Mapping[str, Any], parent: QWidget | None = None) -> None:
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

    @Slot(dict)
    def _on_job(self, job: Mapping[str, Any]) -> None:
        """Show the latest snapshot of the job."""
        self.setWindowTitle(f"Job #{job.get('seq')} — {job.get('task')}")
        self.text.setPlainText(details_text(job))
