"""While the window runs, Python's cyclic garbage is collected on the GUI thread only (app/collector.py)."""
from __future__ import annotations

import gc
import threading
from typing import Any

from backlot.app.collector import MainThreadCollector, paused


class Cycle:
    def __init__(self, log: list[str]) -> None:
        self.me = self
        self.log = log

    def __del__(self) -> None:
        self.log.append(threading.current_thread().name)


def test_a_worker_thread_never_collects_and_the_gui_thread_does(qapp: Any) -> None:
    gc.enable()  # as in a plain process: the collector turns it off
    collector = MainThreadCollector()
    try:
        assert not gc.isenabled()
        freed: list[str] = []
        Cycle(freed)  # garbage in a cycle: only a collection frees it

        def churn() -> None:  # plenty of allocations on a worker: an automatic collection would happen here
            for _ in range(50_000):
                [[] for _ in range(3)]

        worker = threading.Thread(target=churn, name="worker")
        worker.start()
        worker.join()
        assert freed == []
        collector.threshold = (0, 0, 0)
        collector.check()  # what its timer does every INTERVAL_MS, on this thread
        assert freed == [threading.current_thread().name]
    finally:
        collector.stop()
        gc.disable()  # the test session's own setting (tests/conftest.py)
    assert not collector.timer.isActive()


def test_start_up_runs_without_automatic_collection_then_freezes_what_it_made(qapp: Any) -> None:
    gc.enable()  # as in a plain process
    try:
        with paused():  # cli/main.py: from before the window's shell shows
            assert not gc.isenabled()
            collector = MainThreadCollector()
            made = [[i] for i in range(10_000)]  # what start-up builds: it stays
            frozen = gc.get_freeze_count()
            collector.settle()  # app/launch.py: once the core is up
            assert gc.get_freeze_count() >= frozen + len(made)
            assert gc.get_count()[0] == 0  # a collection from now on looks only at what comes next
            collector.stop()
            assert not gc.isenabled()  # still starting or running: the pause decides
        assert gc.isenabled()  # given back as it was
    finally:
        gc.disable()  # the test session's own setting (tests/conftest.py)
