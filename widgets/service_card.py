"""ServiceCard: one service's state, numbers and actions; a view fed by the bridge's signals."""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QToolButton,
                               QWidget)

from backlot.services.models import BreakerSnapshot, HealthSample, ServiceRecord
from backlot.widgets.style import fmt_bytes_gib, fmt_ms, look, mono_font


class ServiceCard(QFrame):
    """A card per service: state light and word, kind, URL, version, latency, queue, VRAM, breaker, last error."""

    open_requested = Signal(str)  # URL of the service's web UI
    reconnect_requested = Signal(str)  # service id
    forget_requested = Signal(str)
    pin_toggled = Signal(str, bool)

    def __init__(self, record: ServiceRecord, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ServiceCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.record = record
        self.title = title
        self.health = "unknown"  # the health monitor's last state; ``state`` is the word shown (ServiceRecord.shown_state)
        self.state = record.shown_state(self.health)
        self.sample: HealthSample | None = None
        self.breaker: BreakerSnapshot | None = None
        self.retry_deadline: float | None = None  # monotonic time the breaker lets the next probe through
        mono = mono_font()
        self.light = QLabel()
        self.light.setObjectName("light")
        self.name = QLabel()
        self.name.setStyleSheet("font-weight: 600;")
        self.version = QLabel()
        self.url = QLabel()
        self.url.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.latency = QLabel(fmt_ms(None))
        self.latency.setFont(mono)
        self.queue = QLabel("queue –")
        self.queue.setFont(mono)
        self.vram = QProgressBar()
        self.vram.setTextVisible(True)
        self.vram.setMaximumHeight(16)
        self.vram.setMinimumWidth(170)
        self.vram.setFont(mono_font(-1))
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setObjectName("detail")
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setVerticalSpacing(2)
        grid.addWidget(self.name, 0, 1)
        grid.addWidget(self.light, 1, 0)
        grid.addWidget(self.version, 0, 2, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.url, 1, 1)
        self.kind = QLabel(record.kind.value)
        self.kind.setStyleSheet("color: palette(mid);")
        grid.addWidget(self.kind, 0, 0)
        grid.addWidget(self.latency, 1, 2, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.queue, 2, 1)
        grid.addWidget(self.vram, 2, 2, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.detail, 3, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        actions = QHBoxLayout()
        actions.setSpacing(4)
        self.open_button = self._button("Open", "Open the service's web UI in the browser",
                                        lambda: self.open_requested.emit(self.record.base_url))
        self.reconnect_button = self._button("Reconnect", "Check the service now, skipping the back-off",
                                             lambda: self.reconnect_requested.emit(self.record.id))
        self.forget_button = self._button("Forget", "Stop watching this service until the next discovery",
                                          lambda: self.forget_requested.emit(self.record.id))
        self.pin_button = self._button("Pin", "Send jobs to this service instead of choosing automatically", None)
        self.pin_button.setCheckable(True)
        self.pin_button.toggled.connect(lambda on: self.pin_toggled.emit(self.record.id, on))
        for b in (self.open_button, self.reconnect_button, self.forget_button, self.pin_button):
            actions.addWidget(b)
        actions.addStretch(1)
        grid.addLayout(actions, 4, 0, 1, 3)
        self._on_record(record)

    def _button(self, text: str, tip: str, slot: object) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        if slot is not None:
            b.clicked.connect(slot)
        return b

    # ----- slots -----
    def _on_record(self, record: ServiceRecord) -> None:
        """A new record for this service (version, URL, vanished, usable)."""
        self.record = record
        self.name.setText(self.title)
        self.version.setText(record.version or "")
        self.url.setText(f"{record.host}:{record.port}")
        self.url.setToolTip(record.base_url)
        self.pin_button.setEnabled(record.usable)
        self.state = record.shown_state(self.health)
        self._render()

    def _on_health(self, sample: HealthSample, state: str) -> None:
        """A finished health check."""
        self.sample = sample
        self.health = state
        self.state = self.record.shown_state(state)  # the core's one rule: `backlot status` shows the same word
        self.latency.setText(fmt_ms(sample.latency_ms) if sample.ok else "    – ms")
        self.queue.setText("queue –" if sample.queue_depth is None else f"queue {sample.queue_depth:>2}")
        if sample.vram:
            total = sum(v.total for v in sample.vram)
            used = sum(v.used for v in sample.vram)
            self.vram.setRange(0, 1000)
            self.vram.setValue(int(1000 * used / total) if total else 0)
            self.vram.setFormat(f"VRAM {fmt_bytes_gib(used)}/{fmt_bytes_gib(total)} GiB")
            self.vram.setVisible(True)
        else:
            self.vram.setVisible(False)
        self._render()

    def _on_breaker(self, snapshot: BreakerSnapshot) -> None:
        """The service's circuit breaker changed."""
        self.breaker = snapshot
        self.retry_deadline = (time.monotonic() + snapshot.retry_in) if snapshot.retry_in is not None else None
        self._render()

    def _on_tick(self, now: float) -> None:
        """Once a second: the "retry in N s" countdown."""
        if self.retry_deadline is not None:
            self._render(now)

    def set_pinned(self, pinned: bool) -> None:
        """Show whether this service is the pinned one (without emitting)."""
        self.pin_button.blockSignals(True)
        self.pin_button.setChecked(pinned)
        self.pin_button.blockSignals(False)

    # ----- rendering -----
    def retry_in(self, now: float | None = None) -> int | None:
        """Whole seconds until the breaker lets a probe through, if it is open."""
        if self.retry_deadline is None or self.breaker is None or self.breaker.state == "closed":
            return None
        return max(0, round(self.retry_deadline - (time.monotonic() if now is None else now)))

    def detail_text(self, now: float | None = None) -> str:
        """The reason line: not usable + fix, breaker countdown with the error class, or the last error."""
        rec = self.record
        if not rec.present:
            return "not found by the last discovery"
        if not rec.usable:
            return rec.hint or "found, but Backlot cannot drive it"
        parts: list[str] = []
        retry = self.retry_in(now)
        if retry is not None and self.breaker is not None:
            classes = ", ".join(f"{k}×{v}" for k, v in sorted(self.breaker.failures_by_class.items()))
            parts.append(f"retry in {retry} s" + (f" ({classes})" if classes else ""))
        if self.sample is not None and not self.sample.ok:
            parts.append(self.sample.message or (self.sample.error_class or "check failed"))
        elif self.state == "degraded" and self.sample is not None and self.sample.message:
            parts.append(self.sample.message)
        return " · ".join(parts)

    def _render(self, now: float | None = None) -> None:
        st = look(self.state)
        self.light.setText(f"{st.symbol} {st.word}")
        self.light.setStyleSheet(f"color: {st.color}; font-weight: 600;")
        detail = self.detail_text(now)
        self.detail.setText(detail)
        self.detail.setVisible(bool(detail))
        self.detail.setStyleSheet(f"color: {st.color};" if self.state in ("down", "degraded") else "")
        self.setStyleSheet(f"#ServiceCard {{ border-left: 4px solid {st.color}; }}")
        self.setAccessibleName(f"{self.title} {st.word}")
