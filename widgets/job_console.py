"""The job console: the Create page (the form at full height, the output viewer, the gallery) and the Queue page.

``JobConsole`` itself is the Create page; ``queue_page`` (the job table with the selected job's details beside it)
is placed on its own page by the window. The viewer follows the newest running job until a gallery tile is
clicked; submitting a job goes back to following.

A ComfyUI workflow file dropped on the console (or picked with "Import workflow…") is handed on as
``import_requested``; the controller imports it off the GUI thread and answers ``_on_import_done`` or
``_on_import_failed`` with one sentence for the status line.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from backlot.services.models import Job, JobState
from backlot.services.tasks import TaskSpec
from backlot.widgets.gallery import Gallery
from backlot.widgets.job_details import JobDetailsPanel
from backlot.widgets.job_form import JobForm
from backlot.widgets.job_table import JobTable
from backlot.widgets.viewer import OutputViewer
from backlot.widgets.workflow_drop import WorkflowDrop

FORM_MIN_WIDTH = 300  # the form stays usable whatever the viewer shows
FORM_WIDTH = 400


class JobConsole(QWidget):
    """``form`` (JobForm), ``preview`` (the OutputViewer), ``gallery``, and ``table`` with details on ``queue_page``."""

    import_requested = Signal(list)  # workflow file paths, dropped or picked
    queue_counted = Signal(int, int)  # jobs running, jobs queued (the status strip shows them)

    def __init__(self, tasks: Sequence[TaskSpec], serving: Mapping[str, Sequence[str]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobConsole")
        WorkflowDrop(self).dropped.connect(self.request_import)
        self.form = JobForm(tasks, serving)
        self.table = JobTable()
        self.preview = self.viewer = OutputViewer()
        self.gallery = Gallery()
        self.details = JobDetailsPanel()
        self.pinned: str | None = None  # a job clicked in the gallery; None: the viewer follows the running job
        self.import_status = QLabel(wordWrap=True, objectName="import-status")
        self.import_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.import_status.setVisible(False)
        self.import_button = QPushButton("Import workflow…", objectName="import-workflow")
        self.import_button.setToolTip("Add a ComfyUI workflow file to your workflows (or drop it on the window)")
        self.import_button.clicked.connect(self._pick_workflow)
        self._dialog: QFileDialog | None = None

        left = QWidget(objectName="generate-column")
        head = QHBoxLayout()
        head.addWidget(QLabel("GENERATE", objectName="section-title"), 1)
        head.addWidget(self.import_button)
        column = QVBoxLayout(left)
        column.setContentsMargins(6, 4, 6, 6)
        column.addLayout(head)
        column.addWidget(self.import_status)
        column.addWidget(self.form, 1)
        self.form_scroll = QScrollArea(objectName="form-scroll", widgetResizable=True)
        self.form_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.form_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.form_scroll.setWidget(left)  # one scroll box only when a task's form is taller than the window
        right = QWidget(objectName="output-column")
        out = QVBoxLayout(right)
        out.setContentsMargins(0, 4, 4, 2)
        out.setSpacing(2)
        out.addWidget(self.viewer, 1)
        out.addWidget(self.gallery)
        self.split = QSplitter(Qt.Orientation.Horizontal, objectName="createSplit")
        self.split.addWidget(self.form_scroll)
        self.split.addWidget(right)
        self.split.setStretchFactor(1, 1)
        self.split.setCollapsible(1, False)
        self.split.setCollapsible(0, False)
        self.form_scroll.setMinimumWidth(FORM_MIN_WIDTH)
        self.split.setSizes([FORM_WIDTH, 1000])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.split)

        self.cancel_button = QPushButton("Cancel", objectName="queue-cancel")
        self.cancel_button.setToolTip("Cancel every selected job still queued or running (Del)")
        self.cancel_button.clicked.connect(self.table.cancel_selected)
        self.retry_button = QPushButton("Retry", objectName="queue-retry")
        self.retry_button.setToolTip("Run every selected job that has ended again, as a new job")
        self.retry_button.clicked.connect(self.table.retry_selected)
        self.selection_label = QLabel(objectName="queue-selection")
        queue_left = QWidget(objectName="queue-column")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("QUEUE", objectName="section-title"))
        bar.addWidget(self.selection_label, 1)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.retry_button)
        column = QVBoxLayout(queue_left)
        column.setContentsMargins(4, 4, 0, 0)
        column.addLayout(bar)
        column.addWidget(self.table, 1)
        self.queue_page = QSplitter(Qt.Orientation.Horizontal, self, objectName="queueSplit")
        self.queue_page.addWidget(queue_left)
        self.queue_page.addWidget(self.details)
        self.queue_page.setStretchFactor(0, 3)
        self.queue_page.setStretchFactor(1, 2)
        self.queue_page.hide()  # until the window puts it on its page

        self.table.job_selected.connect(self.details._on_job)
        self.table.selection_changed.connect(self._on_queue_selection)
        self._on_queue_selection([])
        self.gallery.job_clicked.connect(self.show_job)
        self.gallery.compare_requested.connect(self.compare)
        self.viewer.step_requested.connect(self.step)

    # ----- the jobs -----
    @Slot(object)
    def _on_job(self, job: Job) -> None:
        """A job snapshot for the table, the gallery, the form's status and (when it is the one to show) the viewer."""
        self.table.jobs._on_job(job)
        self.gallery._on_job(job)
        self.form._on_job(job)
        states = [j.state for j in self.gallery.jobs.values()]
        self.queue_counted.emit(states.count(JobState.RUNNING), states.count(JobState.QUEUED))
        shown = self.viewer.job_id
        if self.viewer.compare_id is not None:
            return
        if job.id == shown:
            self.viewer._on_job(job)
        if self.pinned is None:
            self._follow()

    def _on_queue_selection(self, jobs: list[Job]) -> None:
        """Cancel and Retry say how many selected jobs they would act on."""
        active = sum(1 for j in jobs if not j.state.terminal and not j.cancel_requested)
        ended = sum(1 for j in jobs if j.state.terminal)
        self.cancel_button.setText(f"Cancel {active}" if active > 1 else "Cancel")
        self.retry_button.setText(f"Retry {ended}" if ended > 1 else "Retry")
        self.cancel_button.setEnabled(active > 0)
        self.retry_button.setEnabled(ended > 0)
        self.selection_label.setText(f"{len(jobs)} selected" if len(jobs) > 1 else "")

    def _follow(self) -> None:
        """The viewer shows the newest running job; with none running, it keeps the one it shows (or the newest)."""
        jobs = self.gallery.jobs
        running = [j for j in jobs.values() if j.state is JobState.RUNNING]
        shown = jobs.get(self.viewer.job_id or "")
        if running:
            target = max(running, key=lambda j: j.seq)
        elif shown is not None and shown.state is not JobState.QUEUED:
            target = shown
        else:
            done = [j for j in jobs.values() if j.state.terminal]
            target = max(done, key=lambda j: j.seq) if done else None
        if target is not None and target.id != self.viewer.job_id:
            self.viewer._on_job(target)
            self.gallery.mark_current(target.id)

    def show_job(self, job_id: str) -> None:
        """Show one job in the viewer and stay on it (a gallery click)."""
        job = self.gallery.jobs.get(job_id)
        if job is None:
            return
        self.pinned = job_id
        self.viewer._on_job(job)
        self.gallery.mark_current(job_id)

    def step(self, delta: int) -> None:
        """Show the previous (-1) or next (+1) output in the gallery's order and stay on it (←/→ in the viewer)."""
        ids = self.gallery.job_ids()
        if not ids:
            return
        shown = self.viewer.job_id
        row = ids.index(shown) + delta if shown in ids else 0
        if 0 <= row < len(ids) and ids[row] != shown:
            self.show_job(ids[row])
            item = self.gallery.items.get(ids[row])
            if item is not None:
                self.gallery.scrollToItem(item)

    def compare(self, a: str, b: str) -> None:
        """Show two jobs' outputs side by side (a gallery Ctrl-click)."""
        ja, jb = self.gallery.jobs.get(a), self.gallery.jobs.get(b)
        if ja is not None and jb is not None:
            self.pinned = a
            self.viewer.compare_jobs(ja, jb)

    def follow(self) -> None:
        """Go back to following the newest running job (after a submit)."""
        self.pinned = None
        if self.viewer.compare_id is not None:  # leave the comparison: the job to follow is shown afresh
            self.viewer.compare_id = self.viewer.job_id = None
            self.viewer._key = ()
        self._follow()

    # ----- dropping and picking a workflow file -----
    def request_import(self, paths: list[str]) -> None:
        """Say the import has begun and hand the files on."""
        self.import_status.setVisible(True)
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
        self.import_status.setVisible(True)
        self.import_status.setText(message)
        self.import_status.setToolTip(message)
        self.import_status.setProperty("failed", False)

    @Slot(str)
    def _on_import_failed(self, message: str) -> None:
        """Why the file could not be imported, in a sentence."""
        self.import_status.setVisible(True)
        self.import_status.setText(f"✕ {message}")
        self.import_status.setToolTip(message)
        self.import_status.setProperty("failed", True)
