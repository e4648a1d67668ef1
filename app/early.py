"""The window's first paint: a QApplication and the window's shell on screen before the settings and the core load."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication

from app.window import MainWindow


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


@contextmanager
def shown_shell(layout_file: str) -> Iterator[MainWindow]:
    """Show the window's shell (toolbar, docks, placeholders) where the user left it and let it paint once.

    The caller loads the settings, takes the lock and populates the window; when it leaves without having
    populated it (a configuration error, another instance), the shell goes away without saving its layout.
    """
    application()
    window = MainWindow(None, layout_file)
    window.restore_layout()
    window.show()
    QCoreApplication.processEvents()  # one turn of events: the window is on screen before the heavy imports
    try:
        yield window
    finally:
        if not window.populated:
            window.hide()
            window.deleteLater()
