"""The gallery: a strip of tiles, one per job, running jobs first with their progress, then outputs newest first.

Click a tile to show it in the viewer; Ctrl-click a second one to compare the two side by side. Thumbnails are
asked for with ``thumbnail_requested`` and made off the GUI thread by the app layer (the gallery reads no file).
"""
from __future__ import annotations

import copy

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QMouseEvent, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from backlot.services.models import Job, JobState
from backlot.widgets.job_states import state_look
from backlot.widgets.preview import pick_output

THUMB = 96
ID_ROLE = Qt.ItemDataRole.UserRole
LIMIT = 300
_GLYPH = {"video": "▶", "audio": "♪", "text": "¶", "image": "▣", None: "…"}


def tile_text(job: Job) -> str:
    """``#12 · 62%``, ``#12 · queued``, ``#12 ✓`` or ``#12 ✕ failed``."""
    if job.state is JobState.RUNNING:
        fraction = job.status.fraction
        return f"#{job.seq} · {fraction * 100:.0f}%" if fraction is not None else f"#{job.seq} · starting"
    if job.state is JobState.QUEUED:
        return f"#{job.seq} · queued"
    if job.state is JobState.SUCCEEDED:
        return f"#{job.seq} ✓"
    symbol, word, _ = state_look(job)
    return f"#{job.seq} {symbol} {word}"


def sort_key(job: Job) -> tuple[int, int]:
    """Running first, then queued, then the rest; newest first within each."""
    rank = 0 if job.state is JobState.RUNNING else 1 if job.state is JobState.QUEUED else 2
    return rank, -job.seq


def placeholder(kind: str | None, color: str = "#8a8a8a") -> QIcon:
    """A tile's icon until its thumbnail comes: the output kind's glyph."""
    pix = QPixmap(THUMB, THUMB)
    pix.fill(QColor(0, 0, 0, 40))
    painter = QPainter(pix)
    painter.setPen(QColor(color))
    font = painter.font()
    font.setPointSize(28)
    painter.setFont(font)
    painter.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, _GLYPH.get(kind, "…"))
    painter.end()
    return QIcon(pix)


class Gallery(QListWidget):
    """Tiles of jobs (newest first, running first); click to view, Ctrl-click a second to compare."""

    job_clicked = Signal(str)  # job id
    compare_requested = Signal(str, str)  # job shown (A), job added (B)
    thumbnail_requested = Signal(str, str, int)  # job id, image path, edge in pixels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gallery")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 16, THUMB + 26))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(THUMB + 26 + self.horizontalScrollBar().sizeHint().height() + 8)
        self.jobs: dict[str, Job] = {}
        self.items: dict[str, QListWidgetItem] = {}
        self.thumbs: dict[str, str] = {}  # job id -> the path its thumbnail was asked for
        self.current: str | None = None  # the job the viewer shows (A when comparing)
        self._pressing = False
        self.currentItemChanged.connect(self._on_current_item)

    # ----- fed by the console -----
    @Slot(object)
    def _on_job(self, snapshot: Job) -> None:
        """A job snapshot: its tile is made, updated in place, or moved when its state changed."""
        job = copy.copy(snapshot)
        old = self.jobs.get(job.id)
        self.jobs[job.id] = job
        item = self.items.get(job.id)
        picked = pick_output(job)
        kind = picked[0] if picked else None
        if item is None:
            item = QListWidgetItem(placeholder(kind), tile_text(job))
            item.setData(ID_ROLE, job.id)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.items[job.id] = item
            self.insertItem(self._row_for(job), item)
            self._trim()
        else:
            item.setText(tile_text(job))
            if old is not None and sort_key(old)[0] != sort_key(job)[0]:
                self._move(item, job)
        item.setToolTip(f"{job.task}: {job.prompt}" if job.prompt else job.task)
        self._want_thumbnail(job, kind, picked[1] if picked else None)

    def _want_thumbnail(self, job: Job, kind: str | None, path: str | None) -> None:
        if kind == "image" and path is not None:
            wanted = path
        elif job.state is JobState.RUNNING and job.status.preview is not None:
            wanted = str(job.status.preview.path)
        else:
            if kind is not None and job.id not in self.thumbs:
                self.items[job.id].setIcon(placeholder(kind))
                self.thumbs[job.id] = ""
            return
        if self.thumbs.get(job.id) != wanted:
            self.thumbs[job.id] = wanted
            self.thumbnail_requested.emit(job.id, wanted, THUMB)

    @Slot(str, QImage)
    def _on_thumbnail(self, job_id: str, image: QImage) -> None:
        """A thumbnail made off the GUI thread."""
        item = self.items.get(job_id)
        if item is not None and not image.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(image)))

    def mark_current(self, job_id: str | None) -> None:
        """Select the tile of the job the viewer shows (no signal)."""
        self.current = job_id
        item = self.items.get(job_id) if job_id else None
        self.blockSignals(True)
        self.clearSelection()
        if item is not None:
            self.setCurrentItem(item)
            item.setSelected(True)
        self.blockSignals(False)

    def job_ids(self) -> list[str]:
        """The tiles' jobs in the order shown."""
        return [str(self.item(i).data(ID_ROLE)) for i in range(self.count())]

    # ----- clicking -----
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        """Click: view that job; Ctrl-click: compare it with the one viewed."""
        item = self.itemAt(event.position().toPoint())
        shown = self.current
        self._pressing = True  # the current-item change the press makes is handled here, not as a key move
        try:
            super().mousePressEvent(event)
        finally:
            self._pressing = False
        if item is None or event.button() != Qt.MouseButton.LeftButton:
            return
        job_id = str(item.data(ID_ROLE))
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if ctrl and shown is not None and shown != job_id:
            self.current = shown
            self.compare_requested.emit(shown, job_id)
            return
        self.current = job_id
        self.job_clicked.emit(job_id)

    def _on_current_item(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        """Arrow keys move through the outputs (the mouse is handled in ``mousePressEvent``)."""
        if item is None or self._pressing or self.current == item.data(ID_ROLE) or not self.hasFocus():
            return
        self.current = str(item.data(ID_ROLE))
        self.job_clicked.emit(self.current)

    # ----- order -----
    def _row_for(self, job: Job) -> int:
        key = sort_key(job)
        for row in range(self.count()):
            other = self.jobs.get(str(self.item(row).data(ID_ROLE)))
            if other is not None and other.id != job.id and sort_key(other) > key:
                return row
        return self.count()

    def _move(self, item: QListWidgetItem, job: Job) -> None:
        self.blockSignals(True)
        taken = self.takeItem(self.row(item))
        self.insertItem(self._row_for(job), taken)
        self.blockSignals(False)
        if job.id == self.current:
            self.mark_current(job.id)

    def _trim(self) -> None:
        while self.count() > LIMIT:
            item = self.takeItem(self.count() - 1)
            job_id = str(item.data(ID_ROLE))
            self.items.pop(job_id, None)
            self.jobs.pop(job_id, None)
            self.thumbs.pop(job_id, None)

