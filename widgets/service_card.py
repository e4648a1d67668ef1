"""ServiceCard: one service's state, numbers and actions; a view fed by the bridge's signals.

A backend Backlot launches has one card, whether or not discovery has found it yet: the launch entry's state
(◔ starting with its console's last lines, ○ failed with the reason and the lines, ◐ blocked naming the port's
holder, ◔ restarting after its exit code) until it runs, then the service's own health, with Start, Stop, Restart
and Console under it.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QToolButton,
                               QWidget)

from backlot.services.launch.view import LaunchView
from backlot.services.models import BreakerSnapshot, HealthSample, ServiceRecord
from backlot.widgets.style import fmt_bytes_gib, fmt_ms, look, mono_font

TAIL_LINES = 4  # console lines a starting or failed card shows
LAST_LINES = "; last lines:\n"  # how the launcher appends a failed entry's last lines to its message
ACTIVE = ("starting", "running", "restarting")  # launch states with a process Backlot is running or bringing up


def split_message(message: str) -> tuple[str, list[str]]:
    """A launch message as its sentence and the console lines the launcher appended to it (if any)."""
    sentence, _, lines = message.partition(LAST_LINES)
    return sentence, [ln for ln in lines.split("\n") if ln] if lines else []


def offers_mcp(record: ServiceRecord | None, launch: LaunchView | None) -> bool:
    """A Wan2GP that Backlot launched and that runs its web UI only: it can come back with its MCP server (not the
    demo's web UI stand-in, which shows that state on purpose and has no MCP server)."""
    if launch is None or record is None or launch.kind != "wan2gp" or launch.state != "running" or not record.present:
        return False
    if launch.demo:
        return False
    return bool(record.details.get("webui_only")) or "--mcp" in record.hint


class ServiceCard(QFrame):
    """A card per service: state light and word, kind, URL, version, latency, queue, VRAM, breaker, last error;
    for a launched backend also its launch state, console tail and Start / Stop / Restart / Console."""

    open_requested = Signal(str)  # URL of the service's web UI
    reconnect_requested = Signal(str)  # service id
    forget_requested = Signal(str)
    pin_toggled = Signal(str, bool)
    selected = Signal(str)  # the card's key, when clicked
    launch_requested = Signal(str, str)  # action ("start", "stop", "restart", "mcp", "console"), entry name

    def __init__(self, record: ServiceRecord | None, title: str, parent: QWidget | None = None,
                 launch: LaunchView | None = None) -> None:
        super().__init__(parent)
        if record is None and launch is None:
            raise ValueError("a card needs a service record or a launch entry")
        self.setObjectName("ServiceCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.record = record
        self.launch = launch
        self.title = title
        self.is_selected = False
        self.recent: deque[str] = deque(maxlen=TAIL_LINES)  # the console's last lines, live while it starts
        self.health = "unknown"  # the health monitor's last state; ``state`` is the word shown
        self.state = "unknown"
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
        self.vram.setVisible(False)
        self.launch_info = QLabel(objectName="launchInfo")
        self.launch_info.setStyleSheet("color: palette(mid);")
        self.launch_info.setToolTip("the launch entry Backlot runs it by (Settings → Backends Backlot starts)")
        self.launch_info.setWordWrap(True)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setObjectName("detail")
        self.tail = QLabel(objectName="tail")  # the console's last lines while starting or after a failure
        self.tail.setFont(mono_font(-1))
        self.tail.setTextFormat(Qt.TextFormat.PlainText)
        self.tail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long lines are cut
        self.tail.setStyleSheet("background: palette(base); padding: 2px 4px;")
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setVerticalSpacing(2)
        self.kind = QLabel(self.kind_name)
        self.kind.setStyleSheet("color: palette(mid);")
        grid.addWidget(self.kind, 0, 0)
        grid.addWidget(self.name, 0, 1)
        grid.addWidget(self.version, 0, 2, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.light, 1, 0)
        grid.addWidget(self.url, 1, 1)
        grid.addWidget(self.latency, 1, 2, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.queue, 2, 1)
        grid.addWidget(self.vram, 2, 2, alignment=Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.launch_info, 3, 0, 1, 3)
        grid.addWidget(self.detail, 4, 0, 1, 3)
        grid.addWidget(self.tail, 5, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        self.service_row = QWidget()
        actions = QHBoxLayout(self.service_row)
        actions.setContentsMargins(0, 0, 0, 0)
        actions.setSpacing(4)
        self.open_button = self._button("Open", "Open the service's web UI in the browser",
                                        lambda: self.open_requested.emit(self.base_url))
        self.reconnect_button = self._button("Reconnect", "Check the service now, skipping the back-off",
                                             lambda: self.reconnect_requested.emit(self.key))
        self.forget_button = self._button("Forget", "Stop watching this service until the next discovery",
                                          lambda: self.forget_requested.emit(self.key))
        self.pin_button = self._button("Pin", "Send jobs to this service instead of choosing automatically", None)
        self.pin_button.setCheckable(True)
        self.pin_button.toggled.connect(lambda on: self.pin_toggled.emit(self.key, on))
        for b in (self.open_button, self.reconnect_button, self.forget_button, self.pin_button):
            actions.addWidget(b)
        actions.addStretch(1)
        grid.addWidget(self.service_row, 6, 0, 1, 3)
        self.launch_row = QWidget()
        launch_actions = QHBoxLayout(self.launch_row)
        launch_actions.setContentsMargins(0, 0, 0, 0)
        launch_actions.setSpacing(4)
        self.start_button = self._launch_button("Start", "Start this backend", "start")
        self.stop_button = self._launch_button("Stop", "Stop this backend and every process it started", "stop")
        self.restart_button = self._launch_button("Restart", "Stop this backend, then start it again", "restart")
        self.console_button = self._launch_button("Console", "Show what this backend prints, below", "console")
        self.mcp_button = self._launch_button(
            "Restart with --mcp", "Restart Wan2GP with its MCP server, so Backlot can drive it (saved in "
            "config.toml)", "mcp")
        for b in (self.start_button, self.stop_button, self.restart_button, self.console_button, self.mcp_button):
            launch_actions.addWidget(b)
        launch_actions.addStretch(1)
        grid.addWidget(self.launch_row, 7, 0, 1, 3)
        self._refresh()

    def _button(self, text: str, tip: str, slot: object) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        if slot is not None:
            b.clicked.connect(slot)
        return b

    def _launch_button(self, text: str, tip: str, action: str) -> QToolButton:
        b = self._button(text, tip, None)
        b.setObjectName(f"launch-{action}")
        b.clicked.connect(lambda: self.launch is not None and self.launch_requested.emit(action, self.launch.name))
        return b

    # ----- what the card stands for -----
    @property
    def key(self) -> str:
        """The service id (``kind@host:port``): the record's, else the one the launch entry's service will have."""
        if self.record is not None:
            return self.record.id
        assert self.launch is not None
        return self.launch.service_id

    @property
    def kind_name(self) -> str:
        """The backend kind."""
        return self.record.kind.value if self.record is not None else (self.launch.kind if self.launch else "")

    @property
    def host(self) -> str:
        """Where it runs."""
        return self.record.host if self.record is not None else (self.launch.host if self.launch else "")

    @property
    def port(self) -> int:
        """The port it answers on."""
        return self.record.port if self.record is not None else (self.launch.port if self.launch else 0)

    @property
    def base_url(self) -> str:
        """Its web UI's address."""
        return self.record.base_url if self.record is not None else (self.launch.url if self.launch else "")

    @property
    def present(self) -> bool:
        """Whether it counts in the summary: found by the last discovery, or launched by Backlot."""
        return (self.record is not None and self.record.present) or self.launch is not None

    # ----- slots -----
    def _on_record(self, record: ServiceRecord | None) -> None:
        """A new record for this service (version, URL, vanished, usable); None: discovery forgot it."""
        self.record = record
        if record is None:
            self.sample, self.breaker, self.retry_deadline, self.health = None, None, None, "unknown"
        self._refresh()

    def _on_launch(self, view: LaunchView | None) -> None:
        """The launch entry's new view (state, pid, restarts, last lines); None: the entry was removed."""
        self.launch = view
        self.recent.clear()
        if view is not None:
            self._add_recent(view.tail)
        self._refresh()

    def _on_output(self, lines: Iterable[str]) -> None:
        """New console lines: the card shows the newest while the backend starts."""
        self._add_recent(lines)
        if self.launch is not None and self.launch.state in ("starting", "restarting"):
            self._render_tail()

    def _add_recent(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.recent.extend(line.split("\n"))

    def _on_health(self, sample: HealthSample, state: str) -> None:
        """A finished health check."""
        self.sample = sample
        self.health = state
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

    def set_selected(self, selected: bool) -> None:
        """Mark the card whose console the Services page shows."""
        if selected != self.is_selected:
            self.is_selected = selected
            self._render()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        """A click selects the card (a launched backend's console follows it)."""
        self.selected.emit(self.key)
        super().mousePressEvent(event)

    # ----- rendering -----
    def shown_state(self) -> str:
        """The one state word: the launch entry's while it is not running, else the service's own."""
        launch, rec = self.launch, self.record
        if launch is not None and launch.state != "running":
            return launch.state
        if rec is None:
            return "starting" if launch is not None else "unknown"  # running, and discovery is about to know it
        return rec.shown_state(self.health)

    def retry_in(self, now: float | None = None) -> int | None:
        """Whole seconds until the breaker lets a probe through, if it is open."""
        if self.retry_deadline is None or self.breaker is None or self.breaker.state == "closed":
            return None
        return max(0, round(self.retry_deadline - (time.monotonic() if now is None else now)))

    def detail_text(self, now: float | None = None) -> str:
        """The reason line: the launch state's sentence, not usable + fix, breaker countdown with the error class,
        or the last error."""
        launch = self.launch
        if launch is not None and launch.state != "running":
            sentence = split_message(launch.message)[0]
            return sentence or ("not running; Start runs it" if launch.state == "stopped" else "")
        rec = self.record
        if rec is None:
            return ""
        parts: list[str] = []
        if launch is not None and not launch.message.startswith("running"):
            parts.append(split_message(launch.message)[0])  # "changed in the settings: restart it to apply"
        if not rec.present:
            return " · ".join([*parts, "not found by the last discovery"])
        if not rec.usable:
            return " · ".join([*parts, rec.hint or "found, but Backlot cannot drive it"])
        retry = self.retry_in(now)
        if retry is not None and self.breaker is not None:
            classes = ", ".join(f"{k}×{v}" for k, v in sorted(self.breaker.failures_by_class.items()))
            parts.append(f"retry in {retry} s" + (f" ({classes})" if classes else ""))
        if self.sample is not None and not self.sample.ok:
            parts.append(self.sample.message or (self.sample.error_class or "check failed"))
        elif self.state == "degraded" and self.sample is not None and self.sample.message:
            parts.append(self.sample.message)
        return " · ".join(parts)

    def tail_lines(self) -> list[str]:
        """The console lines the card shows: while starting or restarting, and after a failure."""
        launch = self.launch
        if launch is None or launch.state not in ("starting", "restarting", "failed"):
            return []
        appended = split_message(launch.message)[1]  # a failure names the lines it ended with
        if appended:
            return appended[-TAIL_LINES:]
        return [t for t in self.recent if launch.state != "failed" or not t.startswith("[backlot]")][-TAIL_LINES:]

    def launch_text(self) -> str:
        """How Backlot runs it: its entry's name, when it starts, its restart policy, pid and restarts
        ("comfyui · starts with Backlot · restarts on crash · pid 4242 · restarts: 2")."""
        v = self.launch
        if v is None:
            return ""
        parts = [f"{v.name}" + (" (demo)" if v.demo else ""),
                 "starts with Backlot" if v.start == "with-backlot" else "started on demand",
                 "restarts on crash" if v.restart == "on-crash" else "never restarted"]
        if v.keep_running:
            parts.append("keeps running")
        if v.pid is not None:
            parts.append(f"pid {v.pid}" + (" (adopted)" if v.adopted else ""))
        if v.restarts:
            parts.append(f"restarts: {v.restarts}")
        if v.last_exit is not None and v.state == "stopped" and not v.last_exit.expected:
            parts.append(f"last exit {v.last_exit.words}")
        return " · ".join(parts)

    def _render_tail(self) -> None:
        lines = self.tail_lines()
        text = "\n".join(lines)
        if text != self.tail.text():
            self.tail.setText(text)
            self.tail.setToolTip(text)
        self.tail.setVisible(bool(lines))

    def _refresh(self) -> None:
        """Labels and buttons after the record or the launch entry changed."""
        rec, launch = self.record, self.launch
        discovered = rec is not None
        self.name.setText(self.title)
        self.kind.setText(self.kind_name)
        self.version.setText(rec.version if rec is not None else "")
        self.url.setText(f"{self.host}:{self.port}")
        self.url.setToolTip(self.base_url)
        for w in (self.service_row, self.latency, self.queue):  # a launch entry not found (yet): its own buttons
            w.setVisible(discovered)
        if not discovered:
            self.vram.setVisible(False)
        self.pin_button.setEnabled(rec is not None and rec.usable)
        self.launch_row.setVisible(launch is not None)
        self.launch_info.setVisible(launch is not None)
        if launch is not None:
            state = launch.state
            self.start_button.setEnabled(state in ("stopped", "failed", "blocked"))
            self.stop_button.setEnabled(state in ACTIVE)
            self.restart_button.setEnabled(state in (*ACTIVE, "failed"))
            self.mcp_button.setVisible(offers_mcp(rec, launch))
            self.launch_info.setText(self.launch_text())
            self.launch_info.setToolTip(f"launch entry {launch.name}: {launch.command}")
        self._render()

    def _render(self, now: float | None = None) -> None:
        self.state = self.shown_state()
        st = look(self.state)
        self.light.setText(f"{st.symbol} {st.word}")
        self.light.setStyleSheet(f"color: {st.color}; font-weight: 600;")
        detail = self.detail_text(now)
        self.detail.setText(detail)
        self.detail.setVisible(bool(detail))
        warn = self.state in ("down", "degraded", "failed", "blocked")
        self.detail.setStyleSheet(f"color: {st.color};" if warn else "")
        self._render_tail()
        border = "border: 1px solid palette(highlight); " if self.is_selected else ""
        self.setStyleSheet(f"#ServiceCard {{ {border}border-left: 4px solid {st.color}; }}")
        self.setAccessibleName(f"{self.title} {st.word}")
