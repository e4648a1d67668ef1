"""The window end to end on real stand-ins: one qasync loop, discovery, cards, loop lag, clean shutdown."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import qasync  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from backlot.app.assemble import assemble  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.models import JobState  # noqa: E402
from tests.qt_helpers import until  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def run_in_qasync(qapp: Any, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a qasync loop over the test's QApplication, as the window does."""
    qapp.setQuitOnLastWindowClosed(False)  # as run_window does: closing the window starts the shutdown
    loop = qasync.QEventLoop(qapp)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def lag_probe(samples: list[float], stop: asyncio.Event, period: float = 0.01) -> None:
    """How late the loop wakes a 10 ms sleeper, in ms (the window's responsiveness)."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(period)
        samples.append((time.perf_counter() - start - period) * 1000)


def test_window_discovers_stand_ins_shows_cards_and_stops_clean(qapp: Any, qtbot: Any, standin: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    comfy, llm = standin("comfyui"), standin("llm")
    settings = load_settings(cli={"urls": [comfy.url, llm.url], "scan_default_ports": False, "api_port": 0,
                                  "health_interval_visible": 0.5})
    parts = assemble(settings)
    window, shell = parts.window, parts.shell
    qtbot.addWidget(window)

    async def scenario() -> tuple[list[float], set[asyncio.Task[Any]]]:
        lags: list[float] = []
        stop_probe = asyncio.Event()
        window.show()
        window.show_page(2)  # the graphs are built when first shown, and repaint from then on under the probe
        await until(lambda: window.graphs.built)
        window.show_page(0)
        probe = asyncio.create_task(lag_probe(lags, stop_probe), name="lag-probe")
        await shell.start()
        await until(lambda: len(window.dashboard.cards) == 2)
        await until(lambda: all(c.state == "up" for c in window.dashboard.cards.values()))
        assert window.overall.text().endswith("2 up")
        assert "serving" in window.api_panel.state.text()
        assert any("discovery" in ln for ln in window.log_view.visible_lines())  # the bus's log events arrive
        window.dashboard.discover_requested.emit()  # F5's path: a tracked task through the shell
        await until(lambda: not len(shell.keeper))
        await asyncio.sleep(1.5)  # health checks at 0.5 s and the graphs' 5 Hz repaint run under the probe
        cid = next(sid for sid in window.dashboard.cards if sid.startswith("comfyui"))
        assert len(window.graphs.latency.series[cid][0]) >= 2
        console = window.console
        console.form.set_task("text_to_image")
        console.form.prompt.setPlainText("a lighthouse at dusk")
        console.form.submit()  # the console's Generate: through its controller to the JobManager
        await until(lambda: console.table.jobs.rowCount() == 1)
        await until(lambda: console.table.jobs.job(0).state is JobState.SUCCEEDED, timeout=60)
        await until(lambda: console.preview.kind == "image", timeout=20)
        assert not console.preview._image.isNull()
        assert [m.label.format for m in window.graphs.vram.markers][-2:] == ["▲ #1", "▼ #1"]
        stop_probe.set()
        await probe
        window.close()
        await shell.stop()
        left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        return lags, left

    lags, left = run_in_qasync(qapp, scenario())
    parts.close()
    assert not left, f"tasks left running: {[t.get_name() for t in left]}"
    assert shell.bus.subscriber_count == 0
    lags.sort()
    p99 = lags[int(len(lags) * 0.99) - 1]
    assert len(lags) > 50 and p99 < 50.0, f"loop lag p99 {p99:.1f} ms"


def test_screenshot_writes_a_large_png_after_discovery(standin: Any, backlot_home: Path, tmp_path: Path) -> None:
    comfy = standin("comfyui")
    shot = tmp_path / "shot.png"
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "BACKLOT_URLS": comfy.url,
           "BACKLOT_SCAN_DEFAULT_PORTS": "false", "BACKLOT_API_PORT": "0", "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--screenshot", str(shot)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    image = QImage(str(shot))
    assert image.width() >= 1280 and image.height() >= 800
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr


def test_sigterm_closes_the_window_cleanly(backlot_home: Path) -> None:
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "BACKLOT_SCAN_DEFAULT_PORTS": "false",
           "BACKLOT_API_PORT": "0", "QT_QPA_PLATFORM": "offscreen", "PYTHONWARNINGS": "error::ResourceWarning"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py")], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # wait for the instance to be up: it serves the API last
        lines.append(line)
        if "socket API on" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(30) == 0, "".join(lines) + rest
    assert "window closed, core stopped" in rest
    for bad in ("Traceback", "Task was destroyed", "Unclosed", "Warning"):
        assert bad not in rest


def test_second_window_on_the_same_home_names_the_running_pid(backlot_home: Path) -> None:
    from backlot.services.instance import InstanceLock

    settings = load_settings()
    lock = InstanceLock(settings.data_path)
    lock.acquire()
    try:
        env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "QT_QPA_PLATFORM": "offscreen"}
        code = ("import sys; from PySide6.QtCore import QTimer; from PySide6.QtWidgets import QApplication, QMessageBox;"
                "app = QApplication(['t']); t = QTimer(); t.setInterval(50);"
                # stands in for the user closing the dialog once it is on screen (however long that takes)
                "t.timeout.connect(lambda: [w.done(0) for w in app.topLevelWidgets()"
                " if isinstance(w, QMessageBox) and w.isVisible()]); t.start();"
                "import main; sys.exit(main.main([]))")
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(ROOT), capture_output=True, text=True,
                              timeout=60)
    finally:
        lock.release()
    assert done.returncode == 2
    err = [ln for ln in done.stderr.splitlines() if ln.startswith("backlot:")]
    assert len(err) == 1 and f"pid {os.getpid()}" in err[0]


@pytest.mark.skipif(not __import__("shutil").which("Xvfb"), reason="Xvfb is not installed (`make setup` installs it)")
def test_the_cli_finds_the_window_and_a_display_that_goes_away_stops_it(backlot_home: Path) -> None:
    """A command reaches the window's instance; then the X server dies under it: one line and exit 1, no traceback."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert xvfb.stdout is not None
        display = xvfb.stdout.readline().strip()  # Xvfb writes its display number once it accepts clients
        env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
        env.update({"DISPLAY": f":{display}", "BACKLOT_HOME": str(backlot_home), "BACKLOT_API_PORT": "0",
                    "BACKLOT_SCAN_DEFAULT_PORTS": "false"})
        app = subprocess.Popen([sys.executable, str(ROOT / "main.py")], env=env, cwd=str(ROOT),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        info = backlot_home / "data" / "instance.json"
        deadline = time.monotonic() + 60
        while not (info.exists() and str(app.pid) in info.read_text()):  # written once the window serves the API
            assert app.poll() is None and time.monotonic() < deadline, "the window did not start"
            time.sleep(0.05)  # polling a file another process writes: nothing to wait on instead
        status = subprocess.run([sys.executable, str(ROOT / "main.py"), "status", "--json"], env=env, cwd=str(ROOT),
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout.splitlines()[-1])["pid"] == app.pid  # not a second, background instance
    finally:
        xvfb.terminate()
        xvfb.wait(10)
        if xvfb.stdout is not None:
            xvfb.stdout.close()
    _, err = app.communicate(timeout=30)
    assert app.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("backlot:")]
    assert lines == ["backlot: the window's display went away, so Backlot stopped; running jobs are picked up at "
                     "the next start"], err
    assert "Traceback" not in err
