"""WorkflowDrop: lets a widget take ComfyUI workflow files (.json) dragged from a file manager."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QMimeData, QObject, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QWidget


def workflow_files(mime: QMimeData) -> list[str]:
    """The local ``.json`` files among dropped URLs (what a workflow drop may carry)."""
    paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
    return [p for p in paths if p.lower().endswith(".json")]


class WorkflowDrop(QObject):
    """An event filter on ``widget``: a drag carrying .json files is accepted, and the drop emits ``dropped``."""

    dropped = Signal(list)  # the .json file paths

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Take drags and drops of workflow files; let every other event through."""
        if isinstance(event, (QDragEnterEvent, QDropEvent)) and event.type() in (QEvent.Type.DragEnter,
                                                                                 QEvent.Type.Drop):
            paths = workflow_files(event.mimeData())
            if not paths:
                return False
            event.acceptProposedAction()
            if event.type() == QEvent.Type.Drop:
                self.dropped.emit(paths)
            return True
        return False
