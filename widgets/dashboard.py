"""Dashboard: the service cards in a grid, ordered by kind then host, or the empty state that teaches what to do."""
from __future__ import annotations

import time
from collections.abc import Mapping

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from backlot.services.models import BreakerSnapshot, HealthSample, ServiceRecord
from backlot.widgets.service_card import ServiceCard

CARD_WIDTH = 430  # a card's width in the grid: as many columns as fit
EMPTY_TEXT = ("No backends found on localhost. Start ComfyUI, Wan2GP (with --mcp), RVC or AudioLDM, "
              "add a host in Settings, or try the demo backends.")
SEARCHING_TEXT = "Looking for backends on localhost…"
DEMO_STARTING_TEXT = "Starting the demo backends…"


class Dashboard(QWidget):
    """Service cards in a scroll area; actions are re-emitted as signals for the app layer to carry out."""

    discover_requested = Signal()
    demo_requested = Signal()
    open_requested = Signal(str)
    reconnect_requested = Signal(str)
    forget_requested = Signal(str)
    pin_changed = Signal(str)  # the pinned service id, or "auto"

    def __init__(self, titles: Mapping[str, str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.titles = dict(titles or {})
        self.cards: dict[str, ServiceCard] = {}
        self.pinned = "auto"
        self.empty = QWidget()
        empty_layout = QVBoxLayout(self.empty)
        # What the empty state says follows what is happening: "searching" until the first discovery round ends,
        # "demo" while the demo's stand-ins start, then "none" (the text that teaches what to do).
        self.phase = "searching"
        self.empty_label = QLabel(SEARCHING_TEXT)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.discover_button = QPushButton("Discover")
        self.discover_button.clicked.connect(self.discover_requested)
        self.demo_button = QPushButton("Start demo backends")
        self.demo_button.clicked.connect(self.demo_requested)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.discover_button)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        empty_layout.addStretch(1)
        empty_layout.addWidget(self.empty_label)
        empty_layout.addLayout(buttons)
        empty_layout.addStretch(2)
        self.list = QWidget()
        self.list_layout = QGridLayout(self.list)
        self.list_layout.setContentsMargins(4, 4, 4, 4)
        self.list_layout.setSpacing(6)
        self.columns = 1
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.list)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll = scroll
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty)
        layout.addWidget(scroll)
        self.ticker = QTimer(self)  # the breaker countdowns tick once a second
        self.ticker.setInterval(1000)
        self.ticker.timeout.connect(self._on_tick)
        self.ticker.start()
        self._update_empty()

    # ----- slots (the bridge's signals) -----
    def _on_service(self, record: ServiceRecord) -> None:
        """A service was discovered or changed."""
        card = self.cards.get(record.id)
        previous = record.details.get("previous_id")
        if card is None and previous in self.cards:  # it moved port: the card follows it
            card = self.cards.pop(previous)
            self.cards[record.id] = card
        if card is None:
            card = ServiceCard(record, self.titles.get(record.kind.value, record.kind.value))
            card.open_requested.connect(self.open_requested)
            card.reconnect_requested.connect(self.reconnect_requested)
            card.forget_requested.connect(self.forget_requested)
            card.pin_toggled.connect(self._on_pin_toggled)
            self.cards[record.id] = card
            self._place()
        else:
            card._on_record(record)
        self._update_empty()

    def _on_discovery_finished(self, *_: object) -> None:
        """A discovery round ended: with no card, "none found" is now the truth (unless the demo still starts)."""
        if self.phase == "searching":
            self._set_phase("none")

    def _on_demo_state(self, state: str) -> None:
        """The demo's stand-ins: "starting", "running" (discovery follows) or "failed: reason"."""
        if state == "starting":
            self._set_phase("demo")
        elif state == "running":
            self._set_phase("searching")
        else:
            self._set_phase("none", f"The demo backends did not start ({state.removeprefix('failed: ')}). ")

    def _set_phase(self, phase: str, prefix: str = "") -> None:
        self.phase = phase
        self.empty_label.setText(prefix + {"searching": SEARCHING_TEXT, "demo": DEMO_STARTING_TEXT}.get(phase, EMPTY_TEXT))
        self.demo_button.setEnabled(phase != "demo")

    def _on_forgotten(self, service_id: str) -> None:
        """The user forgot a service: its card goes."""
        card = self.cards.pop(service_id, None)
        if card is not None:
            card.setParent(None)
            card.deleteLater()
        if self.pinned == service_id:
            self.pinned = "auto"
            self.pin_changed.emit("auto")
        self._update_empty()

    def _on_health(self, sample: HealthSample, state: str) -> None:
        """A health check finished."""
        card = self.cards.get(sample.service_id)
        if card is not None:
            card._on_health(sample, state)

    def _on_breaker(self, service_id: str, snapshot: BreakerSnapshot) -> None:
        """A breaker opened, half-opened or closed."""
        card = self.cards.get(service_id)
        if card is not None:
            card._on_breaker(snapshot)

    def _on_tick(self) -> None:
        now = time.monotonic()
        for card in self.cards.values():
            card._on_tick(now)

    def _on_pin_toggled(self, service_id: str, on: bool) -> None:
        self.set_pinned(service_id if on else "auto")
        self.pin_changed.emit(self.pinned)

    def set_pinned(self, service_id: str) -> None:
        """Mark the pinned service (``auto``: none) without emitting."""
        self.pinned = service_id
        for sid, card in self.cards.items():
            card.set_pinned(sid == service_id)

    def states(self) -> dict[str, str]:
        """Each card's state word (the tray and the title bar count them)."""
        return {sid: card.state for sid, card in self.cards.items() if card.record.present}

    # ----- layout -----
    def _place(self) -> None:
        ordered = sorted(self.cards.values(), key=lambda c: (c.record.kind.value, c.record.host, c.record.port))
        grid = self.list_layout
        for card in ordered:
            grid.removeWidget(card)
        for row in range(grid.rowCount()):
            grid.setRowStretch(row, 0)
        for i, card in enumerate(ordered):
            grid.addWidget(card, *divmod(i, self.columns), alignment=Qt.AlignmentFlag.AlignTop)
        for col in range(self.columns):
            grid.setColumnStretch(col, 1)
        grid.setRowStretch((len(ordered) + self.columns - 1) // self.columns, 1)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        """As many columns of cards as the width holds."""
        super().resizeEvent(event)
        columns = max(1, self.width() // CARD_WIDTH)
        if columns != self.columns:
            for col in range(self.columns):
                self.list_layout.setColumnStretch(col, 0)
            self.columns = columns
            self._place()

    def _update_empty(self) -> None:
        has = bool(self.cards)
        self.empty.setVisible(not has)
        self.scroll.setVisible(has)
