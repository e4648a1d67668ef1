"""The job console: the form with its live route, the job table and the result preview, in one resizable column.

A ComfyUI workflow file dropped on the console (or picked with "Import workflow…") is handed on as
``import_requested``; the controller imports it off the GUI thread and answers ``_on_import_done`` or
``_on_import_failed`` with one sentence for the status line.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from backlot.services.tasks import TaskSpec
from backlot.widgets.job_form import JobForm
from backlot.widgets.job_table import JobTable
from backlot.widgets.preview import PreviewPanel
from backlot.widgets.workflow_drop import WorkflowDrop


class JobConsole(QWidget):
    """``form`` (JobForm), ``table`` (JobTable) and ``preview`` (PreviewPanel); selecting a job previews it."""

    import_requested = Signal(list)  # workflow file paths, dropped or picked

    def __init__(self, tasks: Sequence[TaskSpec], serving: Mapping[str, Sequence[str]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobConsole")
        WorkflowDrop(self).dropped.connect(self.request_import)
        self.form = JobForm(tasks, serving)
        self.table = JobTable()
        self.preview = PreviewPanel()
        self.split = QSplitter(Qt.Orientation.Vertical, objectName="consoleSplit")
        self.split.addWidget(self.form)
        self.split.addWidget(self.table)
        self.split.addWidget(self.preview)
        self.split.setStretchFactor(1, 2)
        self.split.setStretchFactor(2, 2)
        self.import_status = QLabel(wordWrap=True, objectName="import-status")
        self.import_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.import_button = QPushButton("Import workflow…", objectName="import-workflow")
        self.import_button.setToolTip("Add a ComfyUI workflow file to your workflows (or drop it on the window)")
        self.import_button.clicked.connect(self._pick_workflow)
        self._dialog: QFileDialog | None = None
        head = QHBoxLayout()
        head.addWidget(QLabel("JOB CONSOLE", objectName="section-title"), 1)
        head.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.import_status)
        layout.addWidget(self.split, 1)
        self.table.job_selected.connect(self.preview._on_job)

    # ----- dropping and picking a workflow file -----
    def request_import(self, paths: list[str]) -> None:
        """Say the import has begun and hand the files on."""
        self.import_status.setText(f"Importing {', '.join(p.rsplit('/', 1)[-1] for p in paths)}…")
        self.import_status.setProperty("failed", False)
        self.import_requested.emit(list(paths))

    def _pick_workflow(self) -> None:
        dialog = QFileDialog(self, "Import a ComfyUI workflow", "", "ComfyUI workflows (*.json)")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.filesSelected.connect(lambda paths: self.request_import(list(paths)))
        self._dialog = dialog  # kept: open() returns at once (no nested loop)
        dialog.open()

    # ----- the controller's answers -----
    @Slot(str)
    def _on_import_done(self, message: str) -> None:
        """What was imported, in a sentence."""
        self.import_status.setText(message)
        self.import_status.setToolTip(message)
        self.import_status.setProperty("failed", False)

    @Slot(str)
    def _on_import_failed(self, message: str) -> None:
        """Why the file could not be imported, in a sentence."""
        self.import_status.setText(f"✕ {message}")
        self.import_status.setToolTip(message)
        self.import_status.setProperty("failed", True)
