"""The window's visual language: state symbol, word and colour (never colour alone), fixed-width digits."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont, QFontDatabase, QIcon, QPainter, QPixmap


@dataclass(frozen=True)
class StateLook:
    """How one state reads: a symbol, a word and a colour."""

    symbol: str
    word: str
    color: str


STATES: dict[str, StateLook] = {
    "up": StateLook("●", "up", "#2e9d4f"),
    "degraded": StateLook("◐", "degraded", "#d08a00"),
    "down": StateLook("○", "down", "#d33c3c"),
    "unknown": StateLook("◌", "unknown", "#8a8a8a"),
    # a backend Backlot launches, while it is not (yet) a service that answers
    "starting": StateLook("◔", "starting", "#3b7dd8"),
    "restarting": StateLook("◔", "restarting", "#3b7dd8"),
    "stopping": StateLook("◔", "stopping", "#8a8a8a"),
    "stopped": StateLook("○", "stopped", "#8a8a8a"),
    "failed": StateLook("○", "failed", "#d33c3c"),
    "blocked": StateLook("◐", "blocked", "#d08a00"),
}
# What each state counts as in the title bar's summary and the tray (a stopped entry is not counted: nobody asked
# for it to run).
COUNTED: dict[str, str | None] = {"up": "up", "degraded": "degraded", "down": "down", "unknown": "unknown",
                                  "starting": "starting", "restarting": "starting", "stopping": "starting",
                                  "stopped": None, "failed": "down", "blocked": "degraded"}


def look(state: str) -> StateLook:
    """The look of a health or launch state (``unknown`` for anything else)."""
    return STATES.get(state, STATES["unknown"])


def counted(state: str) -> str | None:
    """The summary state a card's state counts as (None: not counted)."""
    return COUNTED.get(state, "unknown")


def mono_font(point_delta: int = 0) -> QFont:
    """The system's fixed-width font, so numbers update in place without shifting layout."""
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if point_delta:
        font.setPointSize(max(6, font.pointSize() + point_delta))
    return font


def state_icon(state: str, size: int = 32) -> QIcon:
    """A round icon in the state's colour (the tray and the window title)."""
    # Imported here: the window's shell paints before PySide6 builds Qt's 93 enums (12 ms).
    from PySide6.QtCore import Qt

    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(look(state).color))
    painter.setPen(QColor("#202020"))
    painter.drawEllipse(2, 2, size - 4, size - 4)
    painter.end()
    return QIcon(pix)


def fmt_bytes_gib(value: float | None) -> str:
    """Bytes as GiB with one decimal ("–" when unknown)."""
    return "–" if value is None else f"{value / 2**30:.1f}"


def fmt_ms(value: float | None) -> str:
    """Milliseconds, right-aligned to a fixed width ("–" when unknown)."""
    return "    – ms" if value is None else f"{value:5.0f} ms"
