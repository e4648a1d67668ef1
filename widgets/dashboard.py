"""Dashboard: the service cards in a grid, ordered by kind then host, or the empty state that teaches what to do.

A backend Backlot launches has one card: its launch entry's, which the discovered service joins when its id
(``kind@host:port``) matches; an entry that never ran still has its card, with Start.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from backlot.services.launch.view import LaunchView
from backlot.services.models import BreakerSnapshot, HealthSample, ServiceRecord
from backlot.widgets.service_card import ServiceCard
from backlot.widgets.style import counted

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
    launch_requested = Signal(str, str)  # "start", "stop", "restart" or "mcp", launch entry name
    console_selected = Signal(str)  # the launch entry whose console the page shows ("" for none)
    console_requested = Signal(str)  # a card's Console button: show that entry's console

    def __init__(self, titles: Mapping[str, str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.titles = dict(titles or {})
        self.cards: dict[str, ServiceCard] = {}
        self.launches: dict[str, str] = {}  # launch entry name -> the key of its card
        self.selected = ""  # the launch entry whose card is selected (its console is shown)
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
        if card is None and previous in self.cards:  # it moved port: the card follows it (a launch entry's stays)
            moved = self.cards[previous]
            if moved.launch is None:
                card = self.cards.pop(previous)
                self.cards[record.id] = card
            else:
                moved._on_record(None)
        if card is None:
            self._add_card(ServiceCard(record, self._title(record.kind.value)))
        else:
            card._on_record(record)
        self._update_empty()

    def _title(self, kind: str) -> str:
        return self.titles.get(kind, kind)

    def _add_card(self, card: ServiceCard) -> None:
        card.open_requested.connect(self.open_requested)
        card.reconnect_requested.connect(self.reconnect_requested)
        card.forget_requested.connect(self.forget_requested)
        card.pin_toggled.connect(self._on_pin_toggled)
        card.selected.connect(self._on_card_selected)
        card.launch_requested.connect(self._on_launch_requested)
        self.cards[card.key] = card
        self._place()

    def _drop_card(self, key: str) -> None:
        card = self.cards.pop(key, None)
        if card is not None:
            card.setParent(None)
            card.deleteLater()
            self._place()

    # ----- launch entries -----
    def _on_launch(self, view: LaunchView) -> None:
        """A launch entry changed (state, pid, restarts, last lines): its card, made when it has none."""
        key = view.service_id
        old = self.launches.get(view.name)
        if old is not None and old != key:  # its port or kind changed: it leaves the old card
            self._detach(view.name)
        self.launches[view.name] = key
        card = self.cards.get(key)
        if card is None:
            self._add_card(ServiceCard(None, self._title(view.kind), launch=view))
        else:
            card._on_launch(view)
        if not self.selected:  # the console shows the first launched backend until another is chosen
            self.select_launch(view.name)
        self._update_empty()

    def _on_launch_output(self, name: str, lines: tuple[object, ...]) -> None:
        """New console lines of a launch entry: its card shows the newest while it starts."""
        card = self.launch_card(name)
        if card is not None:
            card._on_output(str(getattr(line, "text", line)) for line in lines)

    def _on_launch_list(self, views: list[LaunchView]) -> None:
        """Every launch entry there is now: cards for new ones, entries gone leave theirs."""
        names = {v.name for v in views}
        for name in [n for n in self.launches if n not in names]:
            self._detach(name)
        for view in views:
            self._on_launch(view)
        self._update_empty()

    def _on_launch_removed(self, name: str) -> None:
        """The entry was removed from the settings: its card goes, unless discovery knows the service."""
        self._detach(name)
        self._update_empty()

    def _detach(self, name: str) -> None:
        key = self.launches.pop(name, None)
        card = self.cards.get(key) if key is not None else None
        if card is not None and card.launch is not None and card.launch.name == name:
            if card.record is None:
                self._drop_card(card.key)
            else:
                card._on_launch(None)
        if self.selected == name:
            self.selected = ""
            self.select_launch(next(iter(sorted(self.launches)), ""))

    def launch_card(self, name: str) -> ServiceCard | None:
        """The card of a launch entry."""
        key = self.launches.get(name)
        return self.cards.get(key) if key is not None else None

    def select_launch(self, name: str) -> None:
        """Select a launch entry's card (its console is shown); "" selects none."""
        self.selected = name if name in self.launches else ""
        chosen = self.launch_card(self.selected)
        for card in self.cards.values():
            card.set_selected(card is chosen)
        self.console_selected.emit(self.selected)

    def _on_card_selected(self, key: str) -> None:
        card = self.cards.get(key)
        if card is not None and card.launch is not None and card.launch.name != self.selected:
            self.select_launch(card.launch.name)

    def _on_launch_requested(self, action: str, name: str) -> None:
        if action == "console":
            self.select_launch(name)
            self.console_requested.emit(name)
        else:
            self.launch_requested.emit(action, name)

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
        """The user forgot a service: its card goes (a launch entry's stays, without the service)."""
        card = self.cards.get(service_id)
        if card is not None and card.launch is not None:
            card._on_record(None)
        else:
            self._drop_card(service_id)
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
        """Each card's state as the tray and the title bar count it (a stopped launch entry is not counted)."""
        out = {}
        for sid, card in self.cards.items():
            state = counted(card.state)
            if card.present and state is not None:
                out[sid] = state
        return out

    # ----- layout -----
    def _place(self) -> None:
        ordered = sorted(self.cards.values(), key=lambda c: (c.kind_name, c.host, c.port))
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
