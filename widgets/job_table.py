"""The job table: a model updated in place from job snapshots (``Job``), a progress bar delegate, a view."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QPoint, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QWidget,
)

from backlot.services.models import Job, JobState
from backlot.widgets.job_details import JobDetailsDialog
from backlot.widgets.job_states import state_look

COLUMNS = ("#", "task", "backend", "progress", "state", "duration", "attempts")
PROGRESS = COLUMNS.index("progress")
DURATION = COLUMNS.index("duration")
JOB_ROLE = Qt.ItemDataRole.UserRole  # the row's snapshot
FRACTION_ROLE = Qt.ItemDataRole.UserRole + 1  # 0..1, or None when unknown
_Index = QModelIndex | QPersistentModelIndex


def duration_text(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour); an en dash when there is nothing to time."""
    if seconds is None:
        return "–"
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(job: Job) -> str:
    """What the progress bar says: a percentage, the queue rank, or how the job ended."""
    status, state = job.status, job.state
    if state is JobState.SUCCEEDED:
        return "done"
    if state.terminal:
        return "–"
    if status.fraction is not None:
        return f"{status.fraction * 100:3.0f}%"
    if status.queue_rank is not None:
        return f"queue {status.queue_rank}"
    return "waiting" if state is JobState.QUEUED else "starting"


class JobTableModel(QAbstractTableModel):
    """Jobs newest first, one row per job id, updated in place by ``_on_job``."""

    def __init__(self, clock: Callable[[], float] = time.time, limit: int = 500, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.clock = clock
        self.limit = limit
        self._jobs: list[Job] = []

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802 - Qt's signature
        """Jobs shown."""
        return 0 if parent.isValid() else len(self._jobs)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        """The fixed columns."""
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        """Column titles."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Cell text, tooltip, colour, alignment, the snapshot (``JOB_ROLE``) and the fraction (``FRACTION_ROLE``)."""
        if not index.isValid():
            return None
        job, col = self._jobs[index.row()], index.column()
        if role == JOB_ROLE:
            return job
        if role == FRACTION_ROLE:
            return 1.0 if job.state is JobState.SUCCEEDED else job.status.fraction
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(job, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(job, col)
        if role == Qt.ItemDataRole.ForegroundRole and COLUMNS[col] == "state":
            return QColor(state_look(job)[2])
        if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[col] in ("#", "duration", "attempts"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, job: Job, col: int) -> str:
        name = COLUMNS[col]
        if name == "#":
            return str(job.seq)
        if name == "task":
            return job.task.replace("_to_", "→").replace("_", " ")
        if name == "backend":
            return job.routed_to or job.requested_backend or "auto"
        if name == "progress":
            return progress_text(job)
        if name == "state":
            symbol, word, _ = state_look(job)
            return f"{symbol} {word}"
        if name == "duration":
            return duration_text(self.elapsed(job))
        return str(len(job.attempts))

    def _tooltip(self, job: Job, col: int) -> str:
        status = job.status
        if COLUMNS[col] == "backend":
            return job.route.explain() if job.route is not None else ""
        if COLUMNS[col] == "state" and job.error is not None:
            return job.error.message
        return status.message or job.prompt

    def elapsed(self, job: Job) -> float | None:
        """Seconds the job has run (until it ended), None before it started."""
        start = job.started_at
        if start is None:
            return None
        return float(job.finished_at or self.clock()) - float(start)

    # ----- feeding -----
    @Slot(object)
    def _on_job(self, snapshot: Job) -> None:
        """A job snapshot: its row is updated in place, or inserted in number order."""
        job = copy.copy(snapshot)  # its parts are frozen models, replaced on change: a shallow copy holds still
        row = self.row_of(job.id)
        if row is not None:
            self._jobs[row] = job
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
            return
        row = next((i for i, j in enumerate(self._jobs) if j.seq < job.seq), len(self._jobs))
        self.beginInsertRows(QModelIndex(), row, row)
        self._jobs.insert(row, job)
        self.endInsertRows()
        if len(self._jobs) > self.limit:
            self.beginRemoveRows(QModelIndex(), len(self._jobs) - 1, len(self._jobs) - 1)
            self._jobs.pop()
            self.endRemoveRows()

    def tick(self) -> bool:
        """Refresh the duration of running jobs; True while any job is still running."""
        running = [i for i, j in enumerate(self._jobs) if j.state is JobState.RUNNING]
        for row in running:
            self.dataChanged.emit(self.index(row, DURATION), self.index(row, DURATION))
        return bool(running)

    def row_of(self, job_id: str) -> int | None:
        """The row showing this job, if any."""
        return next((i for i, j in enumerate(self._jobs) if j.id == job_id), None)

    def job(self, row: int) -> Job:
        """The snapshot shown in a row."""
        return self._jobs[row]


class ProgressDelegate(QStyledItemDelegate):
    """Paints the progress column as the platform's progress bar with its text."""

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: _Index) -> None:
        """A progress bar filled to the row's fraction (busy-empty while unknown)."""
        fraction = index.data(FRACTION_ROLE)
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round((fraction or 0.0) * 1000))
        bar.text = str(index.data(Qt.ItemDataRole.DisplayRole))
        bar.textVisible = True
        bar.state = option.state | QStyle.StateFlag.State_Horizontal  # Qt 6: no orientation
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class JobTable(QTableView):
    """The job table view: context menu (cancel, retry, open folder, copy prompt, details), Del cancels."""

    cancel_requested = Signal(str)  # job id
    retry_requested = Signal(str)
    open_folder_requested = Signal(str)
    job_selected = Signal(object)  # the snapshot (Job) of the newly selected job

    def __init__(self, model: JobTableModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = model or JobTableModel(parent=self)
        self.setModel(self.jobs)
        self.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.verticalHeader().hide()
        self.setAlternatingRowColors(True)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(PROGRESS, QHeaderView.ResizeMode.Stretch)
        self.details: dict[str, JobDetailsDialog] = {}
        self._timer = QTimer(self, interval=1000)
        self._timer.timeout.connect(self._on_tick)
        self.customContextMenuRequested.connect(self._on_context_menu)
        self.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.jobs.dataChanged.connect(self._on_data_changed)
        self.jobs.rowsInserted.connect(lambda *_: self._timer.start())

    def selected_job(self) -> Job | None:
        """The snapshot of the selected row, if any."""
        index = self.currentIndex()
        return self.jobs.job(index.row()) if index.isValid() else None

    def select_job(self, job_id: str) -> None:
        """Select a job's row (e.g. the one just submitted)."""
        row = self.jobs.row_of(job_id)
        if row is not None:
            self.selectRow(row)

    def cancel_selected(self) -> None:
        """Ask to cancel the selected job (Del)."""
        job = self.selected_job()
        if job is not None and not job.state.terminal:
            self.cancel_requested.emit(job.id)

    def context_menu_for(self, job: Job) -> QMenu:
        """The actions for one job (built fresh each time; the caller shows it with ``popup``)."""
        menu = QMenu(self)
        job_id, active = job.id, not job.state.terminal
        cancel = menu.addAction("Cancel", lambda: self.cancel_requested.emit(job_id))
        cancel.setEnabled(active and not job.cancel_requested)
        retry = menu.addAction("Retry", lambda: self.retry_requested.emit(job_id))
        retry.setEnabled(not active)
        menu.addAction("Open output folder", lambda: self.open_folder_requested.emit(job_id))
        menu.addAction("Copy prompt", lambda: QGuiApplication.clipboard().setText(job.prompt))
        menu.addSeparator()
        menu.addAction("Show details…", lambda: self.show_details(job_id))
        return menu

    def show_details(self, job_id: str) -> JobDetailsDialog | None:
        """Open (or raise) the non-modal details window of a job; it follows the job's updates."""
        row = self.jobs.row_of(job_id)
        if row is None:
            return None
        dialog = self.details.get(job_id)
        if dialog is None:
            dialog = JobDetailsDialog(self.jobs.job(row), self)
            dialog.finished.connect(lambda _=0, j=job_id: self.details.pop(j, None))
            self.details[job_id] = dialog
        dialog.show()
        dialog.raise_()
        return dialog

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        """Del cancels the selected job."""
        if event.key() == Qt.Key.Key_Delete and not event.modifiers():
            self.cancel_selected()
            event.accept()
            return
        super().keyPressEvent(event)

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        self.selectRow(index.row())
        menu = self.context_menu_for(self.jobs.job(index.row()))
        menu.aboutToHide.connect(menu.deleteLater)
        menu.popup(self.viewport().mapToGlobal(pos))  # popup, not exec: no nested event loop

    def _on_current_row(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            self.job_selected.emit(self.jobs.job(current.row()))

    def _on_data_changed(self, top: QModelIndex, bottom: QModelIndex) -> None:
        for row in range(top.row(), bottom.row() + 1):
            job = self.jobs.job(row)
            dialog = self.details.get(job.id)
            if dialog is not None:
                dialog._on_job(job)
            if job.state is JobState.RUNNING:
                self._timer.start()
            if row == self.currentIndex().row() and top.column() == 0:
                self.job_selected.emit(job)

    def _on_tick(self) -> None:
        if not self.jobs.tick():
            self._timer.stop()
