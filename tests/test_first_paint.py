"""The window shows first: its shell is on screen before the settings and the core load, then fills in (pyqtgraph
loads only when the graphs are first shown)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from backlot.app.window import MainWindow  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pyqtgraph", "numpy", "aiohttp", "pydantic", "backlot.services.config", "qasync", "backlot.app.launch")
# Runs ``backlot`` (no command) with MainWindow.show patched to report what was loaded when the window showed.
PROBE = ("import sys; from PySide6.QtCore import QTimer; import backlot.app.window as aw; show = aw.MainWindow.show\n"
         "def patched(w):\n"
         "    show(w)\n"
         f"    heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
         "    print('SHOWN', w.isVisible(), w.populated, ','.join(heavy) or '-', file=sys.__stdout__, flush=True)\n"
         "    {then}\n"
         "aw.MainWindow.show = patched; import main; sys.exit(main.main([]))")
# Closes the window once the app layer has populated it (the event it waits on is populate's flag).
CLOSE_WHEN_POPULATED = ("t = QTimer(w); t.timeout.connect(lambda: w.populated and (print('POPULATED', len(w.dashboard.cards),"
                        " type(w.graphs).__name__, 'pyqtgraph' in sys.modules, file=sys.__stdout__, flush=True), t.stop(),"
                        " w.close())); t.start(20)")
CLOSE_AT_ONCE = "QTimer.singleShot(0, w.close)"


def run_probe(home: Path, then: str) -> subprocess.CompletedProcess[str]:
    """``backlot`` in a child on the offscreen platform, with ``then`` run right after the window shows."""
    env = {**os.environ, "BACKLOT_HOME": str(home), "BACKLOT_SCAN_DEFAULT_PORTS": "false", "BACKLOT_API_PORT": "0",
           "QT_QPA_PLATFORM": "offscreen", "PYTHONWARNINGS": "error::ResourceWarning"}
    code = PROBE.replace("{then}", then)
    return subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True,
                          timeout=90)


def test_the_window_shows_before_the_core_and_the_graphs_load_then_fills_in(tmp_path: Path) -> None:
    done = run_probe(tmp_path / "home", CLOSE_WHEN_POPULATED)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "SHOWN True False -", done.stdout  # on screen, a shell, none of the heavy modules loaded
    assert lines[1] == "POPULATED 0 Graphs False", done.stdout  # then the real views took their places; the graphs'
    # plots (pyqtgraph) wait until the Services page is first shown
    assert "window closed, core stopped" in done.stderr
    assert (tmp_path / "home" / "config" / "window.ini").is_file()  # a populated window saves its layout


def test_closing_the_shell_before_it_fills_in_exits_cleanly_and_keeps_the_saved_layout(tmp_path: Path) -> None:
    ini = tmp_path / "home" / "config" / "window.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[General]\nkept=yes\n")
    done = run_probe(tmp_path / "home", CLOSE_AT_ONCE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["SHOWN True False -"]
    assert "window closed, core stopped" in done.stderr and "Traceback" not in done.stderr
    assert ini.read_text() == "[General]\nkept=yes\n"  # the shell's placeholder layout was not written over it


@pytest.mark.parametrize("setup", ["bad_setting", "blocked_home"])
def test_a_setup_error_after_the_shell_showed_is_one_sentence_and_exit_2(tmp_path: Path, setup: str) -> None:
    if setup == "bad_setting":
        home = tmp_path / "home"
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.toml").write_text("health_interval = 'often'\n")
        expect = "backlot: configuration error: "
    else:
        (tmp_path / "wall").write_text("a file where a folder was expected")
        home, expect = tmp_path / "wall" / "home", "backlot: cannot use"
    done = run_probe(home, "pass")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["SHOWN True False -"]  # the shell showed, then went away
    said = [ln for ln in done.stderr.splitlines() if ln.startswith("backlot")]
    assert len(said) == 1 and said[0].startswith(expect) and "Traceback" not in done.stderr, done.stderr


def test_a_shell_restored_then_populated_takes_the_layout_the_user_left(qtbot: Any, tmp_path: Path) -> None:
    ini = str(tmp_path / "window.ini")
    first = MainWindow({}, ini)
    qtbot.addWidget(first)
    first.show()
    first.show_page(2)  # the Services page, its cards given more room than the defaults
    first.services_split.setSizes([600, 200])
    qtbot.waitUntil(lambda: first.services_split.sizes()[0] > first.services_split.sizes()[1])
    first.save_layout()
    whole = MainWindow({}, ini)  # the way a populated window restores (--screenshot, the tests)
    qtbot.addWidget(whole)
    whole.restore_layout()
    whole.show()
    shell = MainWindow(None, ini)  # the way ``backlot`` does: the shell restores and shows, then fills in
    qtbot.addWidget(shell)
    shell.restore_layout()
    shell.show()
    assert not shell.populated and not hasattr(shell, "split")
    assert shell.page_actions[1].shortcut().isEmpty()  # a shortcut builds Qt's enums: they come with the pages
    shell.populate({})
    assert [a.shortcut().toString() for a in shell.page_actions] == ["Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4"]
    qtbot.waitUntil(lambda: shell.services_split.sizes() == whole.services_split.sizes())
    assert shell.services_split.sizes()[0] > shell.services_split.sizes()[1]
    assert shell.current_page() == whole.current_page() == "Services" and shell.page_actions[2].isChecked()
    assert shell.discover_action.isEnabled() and shell.overall.text().endswith("no services")


def test_a_command_never_loads_qt(tmp_path: Path) -> None:
    code = ("import sys, main; code = main.main(['--home', sys.argv[1], 'jobs']);"
            "print(code, 'PySide6' in sys.modules, 'backlot.app.window' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.stdout.splitlines()[-1] == "0 False False", done.stdout + done.stderr
