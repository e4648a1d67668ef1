"""The job table: a model updated in place from job snapshots (``Job``), a sorting proxy, a progress bar delegate, a view.

The view shows the jobs through ``JobSortProxy``: by default running first, then queued, then finished, newest first
within each (the "state" column's order); clicking a header sorts by that column. Rows are selected by job: a
selection follows its jobs whatever the updates reorder. Several rows may be selected; Cancel, Retry and Del act
on each of them."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
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
SORT_ROLE = Qt.ItemDataRole.UserRole + 2  # what a column sorts by
STATE = COLUMNS.index("state")
_Index = QModelIndex | QPersistentModelIndex


def duration_text(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour); an en dash when there is nothing to time."""
    if seconds is None:
        return "–"
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def queue_order(job: Job) -> tuple[int, int]:
    """Running first, then queued, then finished; newest first within each."""
    rank = 0 if job.state is JobState.RUNNING else 1 if job.state is JobState.QUEUED else 2
    return rank, -job.seq


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
        if role == SORT_ROLE:
            return self._sort_key(job, col)
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

    def _sort_key(self, job: Job, col: int) -> tuple[Any, ...]:
        """What a column sorts by, then the queue order (equal values keep running, queued, finished, newest first)."""
        name, order = COLUMNS[col], queue_order(job)
        if name == "#":
            return (job.seq,)
        if name == "state":
            return order
        if name == "progress":
            fraction = 1.0 if job.state is JobState.SUCCEEDED else job.status.fraction
            return (-1.0 if fraction is None else fraction, *order)
        if name == "duration":
            elapsed = self.elapsed(job)
            return (-1.0 if elapsed is None else elapsed, *order)
        if name == "attempts":
            return (len(job.attempts), *order)
        return (self._text(job, col).casefold(), *order)

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


class JobSortProxy(QSortFilterProxyModel):
    """The jobs in the order the view shows: a column's ``SORT_ROLE`` key; re-sorted as the jobs change."""

    def __init__(self, source: JobTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: _Index, right: _Index) -> bool:  # noqa: N802 - Qt's name
        """Compare the columns' sort keys (tuples: Qt cannot compare them itself)."""
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        return bool(a < b) if a is not None and b is not None else False


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
    """The job table view: sortable, several rows selectable; context menu (cancel, retry, open folder, copy prompt,
    details); Del cancels every selected job.

    ``jobs`` is the model fed with snapshots (rows newest first); ``order`` the sorting proxy the view shows.
    """

    cancel_requested = Signal(str)  # job id
    retry_requested = Signal(str)
    open_folder_requested = Signal(str)
    job_selected = Signal(object)  # the snapshot (Job) of the newly selected job
    selection_changed = Signal(list)  # the snapshots (Job) of every selected job, in the order shown

    def __init__(self, model: JobTableModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = model or JobTableModel(parent=self)
        self.order = JobSortProxy(self.jobs, self)
        self.setModel(self.order)
        self.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSortingEnabled(True)
        self.sortByColumn(STATE, Qt.SortOrder.AscendingOrder)  # running, queued, finished; newest first in each
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
        self.selectionModel().selectionChanged.connect(lambda *_: self.selection_changed.emit(self.selected_jobs()))
        self.jobs.dataChanged.connect(self._on_data_changed)
        self.jobs.rowsInserted.connect(lambda *_: self._timer.start())

    def job_at(self, index: _Index) -> Job:
        """The snapshot shown at a view index (the proxy's)."""
        return self.jobs.job(self.order.mapToSource(index).row())

    def view_row(self, job_id: str) -> int | None:
        """The row the view shows this job on, if any."""
        row = self.jobs.row_of(job_id)
        return None if row is None else self.order.mapFromSource(self.jobs.index(row, 0)).row()

    def shown_ids(self) -> list[str]:
        """The jobs' ids in the order shown."""
        return [self.job_at(self.order.index(r, 0)).id for r in range(self.order.rowCount())]

    def selected_job(self) -> Job | None:
        """The snapshot of the current row, if any."""
        index = self.currentIndex()
        return self.job_at(index) if index.isValid() else None

    def selected_jobs(self) -> list[Job]:
        """The snapshots of every selected row, in the order shown."""
        rows = sorted(index.row() for index in self.selectionModel().selectedRows())
        return [self.job_at(self.order.index(r, 0)) for r in rows]

    def select_job(self, job_id: str) -> None:
        """Select a job's row alone (e.g. the one just submitted)."""
        row = self.view_row(job_id)
        if row is not None:
            self.selectRow(row)

    def select_jobs(self, job_ids: list[str]) -> None:
        """Select these jobs' rows (and no other); the first is made current."""
        rows = [r for r in (self.view_row(j) for j in job_ids) if r is not None]
        model = self.selectionModel()
        model.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for n, row in enumerate(rows):
            index = self.order.index(row, 0)
            if n == 0:
                model.setCurrentIndex(index, flags)
            else:
                model.select(index, flags)

    def cancel_selected(self) -> None:
        """Ask to cancel every selected job still running or queued (Del, the Cancel button)."""
        for job in self.selected_jobs():
            if not job.state.terminal and not job.cancel_requested:
                self.cancel_requested.emit(job.id)

    def retry_selected(self) -> None:
        """Ask to retry every selected job that has ended (the Retry button)."""
        for job in self.selected_jobs():
            if job.state.terminal:
                self.retry_requested.emit(job.id)

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
        """Del cancels every selected job."""
        if event.key() == Qt.Key.Key_Delete and not event.modifiers():
            self.cancel_selected()
            event.accept()
            return
        super().keyPressEvent(event)

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        if not self.selectionModel().isRowSelected(index.row(), QModelIndex()):
            self.selectRow(index.row())  # a right-click inside the selection keeps it
        menu = self.context_menu_for(self.job_at(index))
        menu.aboutToHide.connect(menu.deleteLater)
        menu.popup(self.viewport().mapToGlobal(pos))  # popup, not exec: no nested event loop

    def _on_current_row(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            self.job_selected.emit(self.job_at(current))

    def _on_data_changed(self, top: QModelIndex, bottom: QModelIndex) -> None:
        """The source model's rows changed (source rows, not the view's)."""
        current = self.currentIndex()
        current_row = self.order.mapToSource(current).row() if current.isValid() else -1
        changed = False
        selected = {j.id for j in self.selected_jobs()} if top.column() == 0 else set()
        for row in range(top.row(), bottom.row() + 1):
            job = self.jobs.job(row)
            dialog = self.details.get(job.id)
            if dialog is not None:
                dialog._on_job(job)
            if job.state is JobState.RUNNING:
                self._timer.start()
            if row == current_row and top.column() == 0:
                self.job_selected.emit(job)
            changed = changed or job.id in selected
        if changed:
            self.selection_changed.emit(self.selected_jobs())  # the buttons follow the selected jobs' states

    def _on_tick(self) -> None:
        if not self.jobs.tick():
            self._timer.stop()
