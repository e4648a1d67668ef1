"""Bounded ring-buffer time series for the graphs and the API."""
from __future__ import annotations

import bisect
from collections import deque


class Series:
    """A bounded series of (time, value) points, oldest dropped first."""

    def __init__(self, maxlen: int) -> None:
        self._t: deque[float] = deque(maxlen=maxlen)
        self._v: deque[float] = deque(maxlen=maxlen)

    def add(self, t: float, value: float) -> None:
        """Append a point (times are expected to grow)."""
        self._t.append(t)
        self._v.append(value)

    def __len__(self) -> int:
        return len(self._t)

    def snapshot(self) -> tuple[list[float], list[float]]:
        """All points as (times, values) lists."""
        return list(self._t), list(self._v)

    def since(self, t: float) -> tuple[list[float], list[float]]:
        """Points newer than ``t``."""
        times = list(self._t)
        i = bisect.bisect_right(times, t)
        return times[i:], list(self._v)[i:]

    def last(self) -> tuple[float, float] | None:
        """The newest point."""
        return (self._t[-1], self._v[-1]) if self._t else None


class Metrics:
    """Named series: ``latency:<service>``, ``success:<service>``, ``queue:<service>``, ``vram_used:<device>`` …"""

    def __init__(self, maxlen: int = 3600) -> None:
        self.maxlen = maxlen
        self._series: dict[str, Series] = {}

    def record(self, name: str, t: float, value: float) -> None:
        """Add a point to a series, creating it on first use."""
        s = self._series.get(name)
        if s is None:
            s = self._series[name] = Series(self.maxlen)
        s.add(t, value)

    def series(self, name: str) -> Series | None:
        """One series, or None."""
        return self._series.get(name)

    def names(self, prefix: str = "") -> list[str]:
        """Series names, optionally filtered by prefix."""
        return sorted(n for n in self._series if n.startswith(prefix))

    def snapshot(self, prefix: str = "") -> dict[str, tuple[list[float], list[float]]]:
        """Every matching series' points."""
        return {n: self._series[n].snapshot() for n in self.names(prefix)}

    def since(self, t: float, prefix: str = "") -> dict[str, tuple[list[float], list[float]]]:
        """Points newer than ``t`` in every matching series."""
        return {n: self._series[n].since(t) for n in self.names(prefix)}

    def success_rate(self, service_id: str, window: int = 20) -> float | None:
        """Share of the last ``window`` checks that succeeded."""
        s = self._series.get(f"success:{service_id}")
        if not s:
            return None
        values = s.snapshot()[1][-window:]
        return sum(values) / len(values)
