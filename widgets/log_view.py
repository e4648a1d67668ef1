"""LogView: the bus's log records, filtered by level and service."""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor, QTextOption
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from backlot.widgets.style import mono_font

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALL_SERVICES = "all services"
KEEP = 5000


@dataclass(frozen=True)
class LogLine:
    """One record as the view keeps it."""

    level: str
    logger: str
    message: str
    at: float
    service: str | None

    def text(self) -> str:
        """``12:04:51 WARNING comfyui@host: message``."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        where = self.service or self.logger
        return f"{stamp} {self.level:<7} {where}: {self.message}"


class LogView(QWidget):
    """A read-only, bounded log with a level filter (that level and above) and a service filter."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines: deque[LogLine] = deque(maxlen=KEEP)
        self.level = QComboBox()
        self.level.addItems(["all", *LEVELS[1:]])
        self.level.setToolTip("Show this level and above (Ctrl+L)")
        self.service = QComboBox()
        self.service.addItem(ALL_SERVICES)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(KEEP)
        self.text.setFont(mono_font(-1))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)  # lines wrap: no sideways scrolling
        self.text.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.text.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Level"))
        bar.addWidget(self.level)
        bar.addWidget(self.service)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self.level.currentIndexChanged.connect(self._on_filter)
        self.service.currentIndexChanged.connect(self._on_filter)

    def focus_filter(self) -> None:
        """Ctrl+L: put the keyboard on the level filter."""
        self.level.setFocus()
        self.level.showPopup()

    def _min_level(self) -> int:
        chosen = self.level.currentText()
        return 0 if chosen == "all" else LEVELS.index(chosen)

    def _shown(self, line: LogLine) -> bool:
        level = LEVELS.index(line.level) if line.level in LEVELS else 1
        wanted = self.service.currentText()
        return level >= self._min_level() and (wanted == ALL_SERVICES or line.service == wanted)

    # ----- slots -----
    def _on_log(self, level: str, logger: str, message: str, at: float, service: str | None) -> None:
        """A log record from the bus."""
        line = LogLine(level, logger, message, at, service)
        self.lines.append(line)
        if service and self.service.findText(service) < 0:
            self.service.addItem(service)
        if self._shown(line):
            self.text.appendPlainText(line.text())
            self.text.moveCursor(QTextCursor.MoveOperation.End)

    def _on_filter(self) -> None:
        self.text.setPlainText("\n".join(line.text() for line in self.lines if self._shown(line)))
        self.text.moveCursor(QTextCursor.MoveOperation.End)

    def visible_lines(self) -> list[str]:
        """What the view shows now (tests read it)."""
        return [ln for ln in self.text.toPlainText().splitlines() if ln]
