"""The plots behind the Services page's graphs (pyqtgraph, numpy): a ring buffer per series, a legend, a time plot.

Imported by ``Graphs.build``, the first time the graphs are shown: nothing else loads pyqtgraph or numpy.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from backlot.widgets.graphs import CAPACITY, MAX_MARKERS

FEW = 30
MARKER_ROWS = 6  # job marker labels take turns on this many heights, so neighbours never stack into one blob


class RingBuffer:
    """A fixed-capacity (time, value) series; the oldest points are overwritten."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._t = np.zeros(capacity)
        self._v = np.zeros(capacity)
        self._n = 0  # points written in all

    def append(self, at: float, value: float) -> None:
        """Add a point."""
        i = self._n % self.capacity
        self._t[i] = at
        self._v[i] = value
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The points in time order."""
        if self._n <= self.capacity:
            return self._t[: self._n], self._v[: self._n]
        i = self._n % self.capacity
        return np.concatenate((self._t[i:], self._t[:i])), np.concatenate((self._v[i:], self._v[:i]))


class Legend(QWidget):
    """The plot's legend outside its area: one row per series (a colour bar, a symbol and its name), click to toggle."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, QCheckBox] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 16, 4, 4)
        self._layout.setSpacing(0)
        self._layout.addStretch(1)
        self.setFixedWidth(270)  # the same in both plots: their time axes line up

    def add(self, key: str, label: str, color: str, item: pg.PlotDataItem) -> None:
        """A row for a new series; unticking it hides the curve."""
        box = QCheckBox(f"━ {label}")
        box.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        box.setChecked(True)
        box.setStyleSheet(f"QCheckBox {{ color: {color}; }}")
        box.setToolTip(f"{label}: click to hide or show this series")
        box.toggled.connect(item.setVisible)
        self.rows[key] = box
        self._layout.insertWidget(self._layout.count() - 1, box)

    def remove(self, key: str) -> None:
        """Drop a series' row."""
        box = self.rows.pop(key, None)
        if box is not None:
            self._layout.removeWidget(box)
            box.deleteLater()


class TimePlot:
    """One plot of named series, each a ring buffer drawn by one PlotDataItem fed with ``setData``."""

    def __init__(self, title: str, unit: str, empty: str = "") -> None:
        self.widget = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.widget.setMenuEnabled(False)
        self.widget.setMouseEnabled(x=False, y=False)
        self.widget.hideButtons()
        # No grid: on a software-rendered view its lines cost more than the curves (measured ~15 ms a repaint).
        self.title = f"{title} ({unit})"
        self.widget.getPlotItem().setTitle(f"{self.title}{' · ' + empty if empty else ''}", size="9pt")
        self.legend = Legend()  # outside the plot: it never covers the axis or the newest data
        self.box = QWidget()
        row = QHBoxLayout(self.box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.widget, 1)
        row.addWidget(self.legend)
        self.marker_count = 0
        self.series: dict[str, tuple[RingBuffer, pg.PlotDataItem]] = {}
        self.dirty: set[str] = set()
        self.markers: list[pg.InfiniteLine] = []
        self.shown: tuple[float, float] = (0.0, 0.0)  # the x range last set

    def add(self, key: str, label: str, at: float, value: float) -> None:
        """Append a point to a series (made on first use)."""
        entry = self.series.get(key)
        if entry is None:
            color = pg.intColor(len(self.series), hues=9, values=1, maxValue=220)
            pen = pg.mkPen(color, width=2)
            item = self.widget.plot([], [], pen=pen)
            self.legend.add(key, label, color.name(), item)
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            entry = self.series[key] = (RingBuffer(), item)
            if len(self.series) == 1:
                self.widget.getPlotItem().setTitle(self.title, size="9pt")
        entry[0].append(at, value)
        self.dirty.add(key)

    def remove(self, key: str) -> None:
        """Drop a series (its service was forgotten)."""
        entry = self.series.pop(key, None)
        if entry is not None:
            self.widget.removeItem(entry[1])
            self.legend.remove(key)
        self.dirty.discard(key)

    def marker(self, at: float, text: str, start: bool) -> None:
        """A vertical job start/end line."""
        color = "#2e9d4f" if start else "#7a5cc7"
        height = 0.94 - 0.14 * (self.marker_count % MARKER_ROWS)  # neighbours' labels sit at different heights
        self.marker_count += 1
        line = pg.InfiniteLine(pos=at, angle=90, movable=False, pen=pg.mkPen(color, width=1, style=pg.QtCore.Qt.PenStyle.DashLine),
                               label=text, labelOpts={"position": height, "color": color, "anchors": [(1, 0.5), (1, 0.5)]})
        self.widget.addItem(line)
        self.markers.append(line)
        while len(self.markers) > MAX_MARKERS:
            self.widget.removeItem(self.markers.pop(0))

    def repaint(self, now: float, window: float) -> None:
        """Push changed series to their items and scroll the view to [now - window, now]."""
        for key in self.dirty:
            buf, item = self.series[key]
            t, v = buf.arrays()
            # Dots while a series is young, so its first points show before there is a line to draw.
            item.setData(t, v, symbol="o" if len(t) < FEW else None, symbolSize=5,
                         symbolBrush=item.opts["pen"].color(), symbolPen=None)
        self.dirty.clear()
        # Scroll only when the view would move by a pixel or more: a long window repaints rarely.
        per_pixel = window / max(1, self.widget.getPlotItem().vb.width())
        lo, hi = now - window, now + window * 0.02  # a little room right of "now" so the newest points show
        if abs(hi - self.shown[1]) >= per_pixel or hi - lo != self.shown[1] - self.shown[0]:
            self.widget.setXRange(lo, hi, padding=0)
            self.shown = (lo, hi)
