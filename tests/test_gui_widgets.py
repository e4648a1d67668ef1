"""The window's views fed with core events through the real bridge (pytest-qt, offscreen, no network)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QEvent, QObject  # noqa: E402
from PySide6.QtWidgets import QLabel  # noqa: E402

from backlot.app.assemble import Parts, assemble  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.events import (BreakerChanged, DiscoveryFinished, HealthSampled, JobUpdated, LogRecorded, ServiceDiscovered,  # noqa: E402
                             ServiceForgotten)
from backlot.services.models import (BreakerSnapshot, HealthSample, Job, JobState, OutputFile, ServiceRecord, ServiceState,  # noqa: E402
                             VramReading)
from backlot.widgets.dashboard import DEMO_STARTING_TEXT, EMPTY_TEXT, SEARCHING_TEXT  # noqa: E402
from backlot.widgets.plots import RingBuffer  # noqa: E402

SID = "comfyui@127.0.0.1:8188"


@pytest.fixture
def parts(qtbot: Any) -> Any:
    """The assembled window (core not started: events are published by the test)."""
    made: Parts = assemble(load_settings())
    qtbot.addWidget(made.window)
    yield made
    made.shell.bridge.close()
    made.tray.hide()


def _record(**kw: Any) -> ServiceRecord:
    base: dict[str, Any] = dict(kind="comfyui", host="127.0.0.1", port=8188, base_url="http://127.0.0.1:8188",
                                protocol="http", version="0.8.0")
    return ServiceRecord(**{**base, **kw})


def _ok(latency: float = 12.0) -> HealthSample:
    gib = 2**30
    return HealthSample(SID, time.time(), True, latency, queue_depth=1,
                        vram=(VramReading("cuda:0", 24 * gib, 6 * gib, "comfyui"),))


def test_empty_state_teaches_and_offers_discover_and_demo(parts: Parts) -> None:
    dash = parts.window.dashboard
    assert not dash.empty.isHidden() and dash.empty_label.text() == SEARCHING_TEXT  # not "none found" before a round
    parts.shell.bus.publish(DiscoveryFinished((), 12.0, 40))
    assert dash.empty_label.text() == EMPTY_TEXT
    assert dash.discover_button.text() == "Discover" and "demo" in dash.demo_button.text().lower()
    parts.shell.bus.publish(ServiceDiscovered(_record()))
    assert dash.empty.isHidden() and SID in dash.cards


def test_empty_state_says_the_demo_backends_are_starting_until_they_are_found(parts: Parts) -> None:
    dash, shell = parts.window.dashboard, parts.shell
    shell.demo_state.emit("starting")
    assert dash.empty_label.text() == DEMO_STARTING_TEXT and not dash.demo_button.isEnabled()
    shell.bus.publish(DiscoveryFinished((), 12.0, 40))  # the core's first round ends while the stand-ins start
    assert dash.empty_label.text() == DEMO_STARTING_TEXT
    shell.demo_state.emit("running")
    assert dash.empty_label.text() == SEARCHING_TEXT
    shell.bus.publish(ServiceDiscovered(_record()))
    assert dash.empty.isHidden() and SID in dash.cards


def test_a_demo_that_failed_to_start_says_why_and_teaches(parts: Parts) -> None:
    dash = parts.window.dashboard
    parts.shell.demo_state.emit("starting")
    parts.shell.demo_state.emit("failed: comfyui stand-in exited with code 1")
    text = dash.empty_label.text()
    assert "did not start (comfyui stand-in exited with code 1)" in text and text.endswith(EMPTY_TEXT)
    assert dash.demo_button.isEnabled()


def test_service_going_down_turns_its_card_red_with_the_breaker_countdown(parts: Parts) -> None:
    bus, dash = parts.shell.bus, parts.window.dashboard
    bus.publish(ServiceDiscovered(_record()))
    bus.publish(HealthSampled(_ok(), ServiceState.UP))
    card = dash.cards[SID]
    assert card.light.text() == "● up" and "#2e9d4f" in card.light.styleSheet()
    assert "12 ms" in card.latency.text() and card.vram.format() == "VRAM 18.0/24.0 GiB"
    assert "1 up" in parts.window.overall.text()
    down = HealthSample(SID, time.time(), False, None, "refused", "connection refused")
    bus.publish(HealthSampled(down, ServiceState.DOWN))
    bus.publish(BreakerChanged(SID, BreakerSnapshot("open", 3, "refused", 0.0, 8.0, {"refused": 3}, retry_in=8.0)))
    assert card.light.text() == "○ down" and "#d33c3c" in card.light.styleSheet()
    assert card.detail.text().startswith("retry in 8 s (refused×3)") and "connection refused" in card.detail.text()
    later = time.monotonic() + 5
    card._on_tick(later)
    assert card.detail.text().startswith("retry in 3 s")
    assert "1 down" in parts.window.overall.text()
    bus.publish(BreakerChanged(SID, BreakerSnapshot("closed", 0, "", None, None)))
    bus.publish(HealthSampled(_ok(), ServiceState.UP))
    assert card.light.text() == "● up" and card.detail.isHidden()


def test_not_usable_service_says_why_and_forget_removes_its_card(parts: Parts) -> None:
    bus, dash = parts.shell.bus, parts.window.dashboard
    rec = _record(kind="wan2gp", port=7860, usable=False, hint="start Wan2GP with --mcp")
    bus.publish(ServiceDiscovered(rec))
    card = dash.cards[rec.id]
    assert card.light.text().startswith("◐") and card.detail.text() == "start Wan2GP with --mcp"
    assert not card.pin_button.isEnabled()
    bus.publish(ServiceForgotten(rec.id))
    assert rec.id not in dash.cards and not dash.empty.isHidden()


def test_card_actions_reach_the_shell(parts: Parts, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(parts.shell.center.application, "reconnect", lambda sid: calls.append(f"reconnect {sid}") or True)
    parts.shell.bus.publish(ServiceDiscovered(_record()))
    card = parts.window.dashboard.cards[SID]
    card.reconnect_button.click()
    assert calls == [f"reconnect {SID}"]
    with qtbot.waitSignal(parts.window.dashboard.pin_changed) as pinned:
        card.pin_button.click()
    assert pinned.args == [SID]


def test_log_view_filters_by_level_and_service(parts: Parts) -> None:
    bus, view = parts.shell.bus, parts.window.log_view
    now = time.time()
    bus.publish(LogRecorded("INFO", "backlot.services.discovery", "discovery: 1 service(s)", now))
    bus.publish(LogRecorded("WARNING", "backlot.services.health", f"{SID} is down: refused", now, SID))
    bus.publish(LogRecorded("ERROR", "backlot.services.health", "llm@h:1 failed", now, "llm@h:1"))
    assert len(view.visible_lines()) == 3
    view.level.setCurrentText("WARNING")
    assert [ln.split(" ", 2)[1] for ln in view.visible_lines()] == ["WARNING", "ERROR"]
    view.service.setCurrentText(SID)
    lines = view.visible_lines()
    assert len(lines) == 1 and "is down" in lines[0]


def test_job_markers_and_tray_notification_follow_a_job(parts: Parts) -> None:
    bus, graphs, tray = parts.shell.bus, parts.window.graphs, parts.tray
    job = Job(id="j1", task="text_to_image", prompt="p", seq=7, routed_to=SID)
    job.state = JobState.RUNNING
    job.started_at = time.time()
    bus.publish(JobUpdated(job))
    done = Job(id="j1", task="text_to_image", prompt="p", seq=7, routed_to=SID, state=JobState.SUCCEEDED,
               outputs=[OutputFile(Path("/x.png"), "image/png", 1)], finished_at=time.time())
    bus.publish(JobUpdated(done))
    assert not graphs.built  # never shown yet: the markers wait for the plots
    graphs.build()
    assert [m.label.format for m in graphs.vram.markers] == ["▲ #7", "▼ #7"]
    assert tray.last_message == ("Job #7 finished", f"text_to_image on {SID}: 1 output(s) ready.")


def test_graphs_repaint_from_ring_buffers_with_peak_downsampling(parts: Parts) -> None:
    bus, graphs = parts.shell.bus, parts.window.graphs
    graphs.build()
    bus.publish(ServiceDiscovered(_record()))
    for i in range(5):
        bus.publish(HealthSampled(_ok(10.0 + i), ServiceState.UP))
    graphs._on_repaint()
    _, item = graphs.latency.series[SID]
    assert list(item.yData) == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert item.opts["downsampleMethod"] == "peak" and item.opts["clipToView"]
    vram_buf, _ = graphs.vram.series[f"service:{SID}"]
    assert len(vram_buf) == 5 and vram_buf.arrays()[1][-1] == pytest.approx(18.0)
    graphs.set_window(60.0)
    lo, hi = graphs.vram.widget.viewRange()[0]
    assert lo == pytest.approx(time.time() - 60.0, abs=1) and hi - lo == pytest.approx(61.2, abs=0.5)


class PaintSpy(QObject):
    """Notes each paint of the widgets it watches."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Paint:
            self.seen.append("painted")
        return False


def test_graphs_build_when_first_shown_with_the_samples_that_came_before(parts: Parts, qtbot: Any) -> None:
    bus, window, graphs = parts.shell.bus, parts.window, parts.window.graphs
    other = "llm@127.0.0.1:8000"
    bus.publish(ServiceDiscovered(_record()))
    for i in range(3):
        bus.publish(HealthSampled(_ok(20.0 + i), ServiceState.UP))
        bus.publish(HealthSampled(HealthSample(other, time.time(), True, 5.0), ServiceState.UP))
    bus.publish(ServiceForgotten(other))
    window.show()
    assert not graphs.built and not hasattr(graphs, "latency")  # the Create page: the plots are not made
    seen: list[str] = []
    spy = PaintSpy(seen)
    graphs.findChild(QLabel, "graphsLoading").installEventFilter(spy)
    build = graphs.build
    graphs.build = lambda: (seen.append("build"), build())  # type: ignore[method-assign]
    window.show_page(2)
    qtbot.waitUntil(lambda: graphs.built)
    assert seen[:2] == ["painted", "build"]  # the page shows "Loading the graphs…" first, then the plots load
    assert graphs.timer.isActive() and graphs.repaints >= 1
    assert list(graphs.latency.series) == [SID]  # the forgotten service's samples went with it
    _, item = graphs.latency.series[SID]
    assert list(item.yData) == [20.0, 21.0, 22.0]


def test_ring_buffer_keeps_the_newest_points_in_order() -> None:
    buf = RingBuffer(4)
    for i in range(6):
        buf.append(float(i), float(i * 10))
    t, v = buf.arrays()
    assert list(t) == [2.0, 3.0, 4.0, 5.0] and list(v) == [20.0, 30.0, 40.0, 50.0]


def test_a_card_shows_the_state_status_shows(parts: Parts) -> None:
    """The card's word is ServiceRecord.shown_state of the monitor's state, as services.list and `backlot status`."""
    from backlot.services.models import ServiceState

    bus, dash = parts.shell.bus, parts.window.dashboard
    rec = _record(kind="wan2gp", port=7860, usable=False, hint="start Wan2GP with --mcp")
    bus.publish(ServiceDiscovered(rec))
    card = dash.cards[rec.id]
    for health in ("up", "down", "unknown"):
        card._on_health(_ok(), health)
        assert card.state == rec.shown_state(health) == "degraded"
    from dataclasses import replace

    usable = replace(rec, usable=True, hint="")
    card._on_record(usable)  # usable now: the last health state shows at once, not the old "degraded"
    assert card.state == usable.shown_state(ServiceState.UNKNOWN) == "unknown"
    card._on_health(_ok(), "up")
    assert card.state == "up"
