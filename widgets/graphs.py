"""Graphs: VRAM per GPU and per service, latency per service, on one time axis; repainted by a UI timer.

The plots (``plots.py``: pyqtgraph and numpy, half a second to load) are built the first time the graphs are
shown, once the page has painted with "Loading the graphs…"; until then the samples and job markers wait here
in plain buffers, bounded as the plots are.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from backlot.widgets.plots import TimePlot

WINDOWS = {"1 min": 60.0, "10 min": 600.0, "1 h": 3600.0}
REPAINT_HZ = 4
CAPACITY = 4096  # points kept per series
MAX_MARKERS = 200  # job markers kept


class Graphs(QWidget):
    """VRAM and latency plots sharing one time axis, with a 1 min / 10 min / 1 h window."""

    window_changed = Signal(float)
    vram: TimePlot  # both made by build
    latency: TimePlot

    def __init__(self, parent: QWidget | None = None, clock: object = time.time) -> None:
        super().__init__(parent)
        self.clock = clock
        self.window = WINDOWS["10 min"]
        self.built = False
        self.repaints = 0
        # Until build: per plot, each series' label and newest points; the newest job markers.
        self._waiting: dict[str, dict[str, tuple[str, deque[tuple[float, float]]]]] = {"vram": {}, "latency": {}}
        self._waiting_markers: deque[tuple[float, str, bool]] = deque(maxlen=MAX_MARKERS)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Window"))
        self.window_group = QButtonGroup(self)
        for name, seconds in WINDOWS.items():
            b = QPushButton(name)
            b.setCheckable(True)
            b.setChecked(seconds == self.window)
            b.setProperty("seconds", seconds)
            self.window_group.addButton(b)
            bar.addWidget(b)
        self.window_group.buttonClicked.connect(lambda b: self.set_window(float(b.property("seconds"))))
        bar.addStretch(1)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addLayout(bar)
        self._placeholder = QLabel("Loading the graphs…")
        self._placeholder.setObjectName("graphsLoading")
        self._placeholder.installEventFilter(self)  # the graphs are first shown: build them (eventFilter)
        self._build_due = False
        self._layout.addWidget(self._placeholder, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(1000 // REPAINT_HZ)
        self.timer.timeout.connect(self._on_repaint)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """The placeholder's first paint (the page is on screen, saying so): build the plots right after it."""
        if watched is self._placeholder and event.type() == QEvent.Type.Paint and not self._build_due:
            self._build_due = True
            QTimer.singleShot(0, self.build)
        return False

    def build(self) -> None:
        """Make the plots, put in what came before, and start repainting (twice is harmless)."""
        if self.built:
            return
        import pyqtgraph as pg

        from backlot.widgets.plots import TimePlot

        pg.setConfigOptions(antialias=False, foreground=self.palette().color(QPalette.ColorRole.Text),
                            background=self.palette().color(QPalette.ColorRole.Base))
        self.vram = TimePlot("VRAM used", "GiB", "no readings yet: no local NVIDIA GPU (NVML) and no service reports VRAM")
        self.latency = TimePlot("Latency", "ms")
        self.latency.widget.setXLink(self.vram.widget)
        self._placeholder.removeEventFilter(self)
        self._layout.removeWidget(self._placeholder)
        self._placeholder.deleteLater()
        self._layout.addWidget(self.vram.box, 3)
        self._layout.addWidget(self.latency.box, 2)
        self.built = True
        for name, plot in (("vram", self.vram), ("latency", self.latency)):
            for key, (label, points) in self._waiting[name].items():
                for at, value in points:
                    plot.add(key, label, at, value)
        for at, text, start in self._waiting_markers:
            self.vram.marker(at, text, start)
        self._waiting = {"vram": {}, "latency": {}}
        self._waiting_markers.clear()
        self.timer.start()
        self._on_repaint()

    def set_window(self, seconds: float) -> None:
        """Show the last ``seconds`` of history."""
        self.window = seconds
        for b in self.window_group.buttons():
            b.setChecked(float(b.property("seconds")) == seconds)
        self.window_changed.emit(seconds)
        self._on_repaint()

    def _add(self, plot: str, key: str, label: str, at: float, value: float) -> None:
        if self.built:
            getattr(self, plot).add(key, label, at, value)
            return
        waiting = self._waiting[plot]
        if key not in waiting:
            waiting[key] = (label, deque(maxlen=CAPACITY))
        waiting[key][1].append((at, value))

    # ----- slots -----
    def _on_vram(self, key: str, label: str, at: float, used_bytes: float) -> None:
        """VRAM in use on a GPU or by a service."""
        self._add("vram", key, label, at, used_bytes / 2**30)

    def _on_latency(self, service_id: str, at: float, latency_ms: float) -> None:
        """A health check's latency."""
        self._add("latency", service_id, service_id, at, latency_ms)

    def _on_job_marker(self, at: float, text: str, start: bool) -> None:
        """A job started or ended."""
        if self.built:
            self.vram.marker(at, text, start)
        else:
            self._waiting_markers.append((at, text, start))

    def _on_forgotten(self, service_id: str) -> None:
        """Drop a forgotten service's series."""
        if not self.built:
            self._waiting["latency"].pop(service_id, None)
            self._waiting["vram"].pop(f"service:{service_id}", None)
            return
        self.latency.remove(service_id)
        self.vram.remove(f"service:{service_id}")

    def _on_repaint(self) -> None:
        if not self.built:
            return
        now = float(self.clock())  # type: ignore[operator]
        self.vram.repaint(now, self.window)
        self.latency.repaint(now, self.window)
        self.repaints += 1
