"""The job console: the form with its live route, the job table and the result preview, in one resizable column."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from services.tasks import TaskSpec
from widgets.job_form import JobForm
from widgets.job_table import JobTable
from widgets.preview import PreviewPanel


class JobConsole(QWidget):
    """``form`` (JobForm), ``table`` (JobTable) and ``preview`` (PreviewPanel); selecting a job previews it."""

    def __init__(self, tasks: Sequence[TaskSpec], serving: Mapping[str, Sequence[str]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobConsole")
        self.form = JobForm(tasks, serving)
        self.table = JobTable()
        self.preview = PreviewPanel()
        self.split = QSplitter(Qt.Orientation.Vertical, objectName="consoleSplit")
        self.split.addWidget(self.form)
        self.split.addWidget(self.table)
        self.split.addWidget(self.preview)
        self.split.setStretchFactor(1, 2)
        self.split.setStretchFactor(2, 2)
        title = QLabel("JOB CONSOLE", objectName="section-title")
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.split, 1)
        self.table.job_selected.connect(self.preview._on_job)
