"""Tray icon: the overall state at a glance and a notification when a job finishes."""
from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from backlot.services.models import Job, JobState
from backlot.widgets.style import look, state_icon


def job_message(job: Job) -> tuple[str, str]:
    """Title and one sentence for a finished job."""
    backend = job.routed_to or "no backend"
    if job.state is JobState.SUCCEEDED:
        return f"Job #{job.seq} finished", f"{job.task} on {backend}: {len(job.outputs)} output(s) ready."
    reason = (job.error.message if job.error is not None else "") or job.status.message or job.state.value
    return f"Job #{job.seq} {job.state.value}", f"{job.task} on {backend}: {reason}"


class Tray(QObject):
    """A system tray icon (shown only where the desktop has a tray)."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.icon = QSystemTrayIcon(state_icon("unknown"), self)
        self.icon.setToolTip("Backlot")
        menu = QMenu()
        show = QAction("Show Backlot", menu)
        show.triggered.connect(self._on_show)
        quit_action = QAction("Quit", menu)
        quit_action.triggered.connect(window.close)
        menu.addAction(show)
        menu.addAction(quit_action)
        self.menu = menu
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(lambda *_: self._on_show())
        self.last_message: tuple[str, str] | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.icon.show()

    def _on_show(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _on_state(self, state: str, text: str) -> None:
        """The overall state changed."""
        self.icon.setIcon(state_icon(state))
        self.icon.setToolTip(f"Backlot: {look(state).symbol} {text}")

    def _on_job_finished(self, job: Job) -> None:
        """Tell the user a job ended (succeeded, failed or cancelled)."""
        title, body = job_message(job)
        self.last_message = (title, body)
        kind = (QSystemTrayIcon.MessageIcon.Information if job.state is JobState.SUCCEEDED
                else QSystemTrayIcon.MessageIcon.Warning)
        if self.icon.isVisible():
            self.icon.showMessage(title, body, kind, 5000)

    def hide(self) -> None:
        """Remove the icon from the tray (at shutdown)."""
        self.icon.hide()
