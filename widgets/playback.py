"""What the video and audio players share: fitting a picture, the clock readout, their buttons, and the bridge
that carries a worker thread's news to the GUI thread."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QObject,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QFontDatabase,
)
from PySide6.QtWidgets import (
    QLabel,
    QToolButton,
)


def fit_rect(size: QSize, area: QRect) -> QRect:
    """The largest rectangle of ``size``'s aspect ratio centred in ``area``."""
    if size.isEmpty() or area.isEmpty():
        return QRect()
    scale = min(area.width() / size.width(), area.height() / size.height())
    w, h = max(1, round(size.width() * scale)), max(1, round(size.height() * scale))
    return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)


def clock_text(seconds: float) -> str:
    """mm:ss.ss, always the same number of characters."""
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60):02d}:{seconds % 60:05.2f}"


def fixed_font_label() -> QLabel:
    label = QLabel()
    label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    return label


def tool_button(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space and the arrows belong to the player, not a button
    return button


class Bridge(QObject):
    """Carries a worker thread's news to the GUI thread; every signal names its sender so stale news is dropped.

    A bridge has no parent: Qt must never delete it with its widget while a worker thread may be emitting on it
    (that race crashed the process). The widget and the worker each hold a reference; when the widget goes, Qt
    drops its connections, and the bridge lives until the worker lets go of it.
    """

    opened = Signal(object, object)  # sender, {"frame_count", "fps", "width", "height"}
    frame_ready = Signal(object, int)  # sender, frame index the GUI waited for
    count_changed = Signal(object, int)  # sender, the true frame count (the container's was wrong)
    failed = Signal(object, str)  # sender, message
    waveform = Signal(object, object)  # sender, (mins, maxs, duration ms)

    def send(self, signal: str, *args: Any) -> None:
        """Emit from any thread (the receivers' slots run on the GUI thread)."""
        try:
            getattr(self, signal).emit(*args)
        except RuntimeError:
            pass
