"""The window's first paint: a QApplication and the window's shell on screen before the settings and the core load."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QObject, QTimer
from PySide6.QtWidgets import QApplication

from backlot.app.window import MainWindow

PAINT_LIMIT_MS = 500  # a slow display server: the window fills in with its first paint at the latest then


def has_display() -> bool:
    """True when Qt can open windows here: a display server, or a platform plugin chosen explicitly."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))


def application() -> QApplication:
    """The one QApplication (made here when there is none yet), set up as the window's app layer wants it."""
    app = QApplication.instance() or QApplication(["backlot"])
    assert isinstance(app, QApplication)
    app.setApplicationName("Backlot")
    app.setQuitOnLastWindowClosed(False)  # closing the window starts our shutdown; the loop ends after it
    return app


class FirstPaint(QObject):
    """Notes the window's first paint; ``wait`` runs events until it came (a display server maps windows later)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.painted = False
        self._loop: QEventLoop | None = None
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Note the first paint event, then step out of the way."""
        if event.type() == QEvent.Type.Paint:
            self.painted = True
            watched.removeEventFilter(self)
            if self._loop is not None:
                self._loop.quit()
        return False

    def wait(self, limit_ms: int) -> None:
        """Run events until the first paint, ``limit_ms`` at most."""
        if self.painted:
            return
        self._loop = QEventLoop()
        QTimer.singleShot(limit_ms, self._loop.quit)
        self._loop.exec()
        self._loop = None


@contextmanager
def shown_shell(layout_file: str) -> Iterator[MainWindow]:
    """Show the window's shell (title, toolbar) where the user left it and let it paint before anything loads.

    The caller loads the settings, takes the lock and populates the window; when it leaves without having
    populated it (a configuration error, another instance), the shell goes away without saving its layout.
    """
    application()
    window = MainWindow(None, layout_file)
    window.restore_layout()
    painted = FirstPaint(window)
    window.show()
    QCoreApplication.processEvents()  # a turn of events: offscreen, the window has painted now
    painted.wait(PAINT_LIMIT_MS)  # on a display server it paints once the server has mapped it
    try:
        yield window
    finally:
        if not window.populated:
            window.hide()
            window.deleteLater()
