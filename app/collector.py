"""Python's cyclic garbage collector runs on the window's thread only.

Left automatic, a collection runs on whichever thread happens to allocate at the wrong moment: a worker
thread importing litellm, decoding a clip or reading a file. A Qt object caught in a reference cycle (a
dialog and the lambda connected to its signal, say) is then destroyed on that thread; its timers cannot be
unregistered from there, and the next one to fire crashes the process. So automatic collection is off while
the window runs, and a timer on the GUI thread collects, generation by generation, as the thresholds say
(the approach calibre and other long-lived PyQt applications take).

Start-up makes some 100,000 objects that live as long as the process (modules, classes, the window). Collected
automatically while they are made, they cost 100 ms and more of full collections before the window is usable;
so collection is off from the start (``paused``), and once the core is up ``settle`` moves them out of the
collector's sight, where no later collection looks at them again.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 2000


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside (the window's start-up, then its run); as it was again on leaving."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class MainThreadCollector(QObject):
    """Turns automatic collection off and collects from a timer on the thread it was made on."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.was_enabled = gc.isenabled()
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self, interval=INTERVAL_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (the oldest first)."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.threshold[generation]:
                gc.collect(generation)
                return

    def settle(self) -> None:
        """Start-up is over: freeze what it made (``gc.freeze``), so that later collections look only at newer
        objects. The cycles it left as garbage stay (about 3,000 objects, measured with two services)."""
        gc.freeze()

    def stop(self) -> None:
        """Collect once more and give collection back to Python."""
        self.timer.stop()
        gc.collect()
        if self.was_enabled:
            gc.enable()
