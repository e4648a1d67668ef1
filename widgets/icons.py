"""Icons from ``resources/icons`` (SVG), never a font glyph that may render as an empty box (⏸ in many fonts)."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

ICON_DIR = Path(__file__).resolve().parent.parent / "resources" / "icons"
# Every icon the window uses (a test renders each one and looks for painted pixels).
USED = ("backlot", "play", "pause")


def icon_path(name: str) -> Path:
    """The SVG file of an icon."""
    return ICON_DIR / f"{name}.svg"


@cache
def icon(name: str) -> QIcon:
    """The icon ``name`` (``play``, ``pause``, ``backlot``), loaded once."""
    return QIcon(str(icon_path(name)))
