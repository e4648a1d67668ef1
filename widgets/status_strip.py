"""The status strip across the bottom of every page: one compact item per service, and the queue count.

Each item reads "● up ComfyUI 127.0.0.1 41 ms 18.0/24.0 GiB" (state symbol and word, never colour alone);
clicking one asks for the Services page with ``service_clicked``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

from backlot.widgets.style import fmt_bytes_gib, look, mono_font

LOCAL = ("127.0.0.1", "localhost", "::1")

if TYPE_CHECKING:
    from backlot.widgets.service_card import ServiceCard


def item_text(card: ServiceCard) -> str:
    """One service in a few words: state, name, host, latency, VRAM where known."""
    st = look(card.state)
    parts = [f"{st.symbol} {st.word}", card.title]
    if card.host not in LOCAL:
        parts.append(card.host)
    sample = card.sample
    if sample is not None and sample.latency_ms is not None and card.state != "down":
        parts.append(f"{sample.latency_ms:.0f} ms")
    if sample is not None and sample.vram:
        used = sum(v.used for v in sample.vram)
        total = sum(v.total for v in sample.vram)
        parts.append(f"{fmt_bytes_gib(used)}/{fmt_bytes_gib(total)} GiB")
    return " ".join(parts)


class StatusStrip(QWidget):
    """Service items and "N running, M queued"; a view refreshed from the dashboard's cards and the job counts."""

    service_clicked = Signal(str)  # service id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status-strip")
        self.items: dict[str, QToolButton] = {}
        row = QWidget()  # clipped, never widening the window, when there are more services than room
        row.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._row = QHBoxLayout(row)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(2)
        self._row.addStretch(1)
        self.none = QLabel("No services yet")
        self.queue = QLabel("0 running, 0 queued", objectName="queue-count")
        self.queue.setFont(mono_font(-1))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 1, 6, 1)
        layout.addWidget(self.none)
        layout.addWidget(row, 1)
        layout.addWidget(self.queue)

    def set_cards(self, cards: Iterable[ServiceCard]) -> None:
        """Refresh the items from the dashboard's cards (made, updated in place, or dropped)."""
        seen: set[str] = set()
        ordered = sorted(cards, key=lambda c: (c.kind_name, c.host, c.port))
        for i, card in enumerate(ordered):
            sid = card.key
            seen.add(sid)
            button = self.items.get(sid)
            if button is None:
                button = QToolButton(objectName=f"strip-{sid}")
                button.setAutoRaise(True)
                button.setFont(mono_font(-1))
                button.clicked.connect(lambda _=False, s=sid: self.service_clicked.emit(s))
                self.items[sid] = button
            self._row.insertWidget(i, button)
            st = look(card.state)
            button.setText(item_text(card))
            button.setStyleSheet(f"color: {st.color};")
            button.setToolTip(f"{sid}: {card.detail.text() or st.word} (click for the Services page)")
        for sid in [s for s in self.items if s not in seen]:
            button = self.items.pop(sid)
            self._row.removeWidget(button)
            button.deleteLater()
        self.none.setVisible(not self.items)

    def set_queue(self, running: int, queued: int) -> None:
        """The job counts."""
        self.queue.setText(f"{running} running, {queued} queued")
