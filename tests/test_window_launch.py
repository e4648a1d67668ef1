"""The Services page runs the backends Backlot launches: one card per entry (merged with its discovered service),
its state in the window's words, Start / Stop / Restart, its console live, "Restart with --mcp" for a web-UI-only
Wan2GP, and the settings dialog's "Backends Backlot starts" (pytest-qt, offscreen, the real core; stand-ins and
small Python commands as the launched backends)."""
from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtGui import QGuiApplication, QTextCursor  # noqa: E402
from PySide6.QtWidgets import QDialogButtonBox  # noqa: E402

from backlot.app.assemble import Parts, assemble  # noqa: E402
from backlot.services.config import Settings, load_settings  # noqa: E402
from backlot.services.events import LaunchUpdated, ServiceDiscovered  # noqa: E402
from backlot.services.launch.console import ConsoleLine  # noqa: E402
from backlot.services.launch.entry import LaunchEntry  # noqa: E402
from backlot.services.launch.process import free_port  # noqa: E402
from backlot.services.launch.view import ExitInfo, LaunchView  # noqa: E402
from backlot.services.models import ServiceRecord  # noqa: E402
from backlot.standins import demo  # noqa: E402
from backlot.standins.launcher import IMPORT_ROOT  # noqa: E402
from backlot.widgets.launch_console import LaunchConsole  # noqa: E402
from tests.qt_helpers import run_in_qasync, until  # noqa: E402

BROKEN = ("import sys; print('Total VRAM 24564 MB, total RAM 64210 MB'); print('Traceback (most recent call last):'); "
          "print('ModuleNotFoundError: No module named torchsde', flush=True); sys.exit(1)")
SLEEPER = "import time; print('loading', flush=True); time.sleep(600)"
# A stand-in for Wan2GP's wgp.py: its web UI alone, or with --mcp its MCP server (as the real one does)
WGP = textwrap.dedent("""\
    import os, sys
    args = sys.argv[1:]
    if "--mcp" in args:
        port, module = args[args.index("--mcp-port") + 1], "backlot.standins.wan2gp"
    else:
        port, module = args[args.index("--server-port") + 1], "backlot.standins.wan2gp_webui"
    print("wgp.py:", " ".join(args), flush=True)
    os.execv(sys.executable, [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", port])
""")


def _settings(**extra: Any) -> Settings:
    return load_settings(cli={"scan_default_ports": False, "discovery_budget": 1.0, "api_port": 0,
                              "health_interval_visible": 0.5, **extra})


def _python_entry(script: str, **kw: Any) -> LaunchEntry:
    return LaunchEntry.model_validate({"kind": "comfyui", "command": [sys.executable, "-u", "-c", script],
                                       "port": free_port(), **kw})


def _run(qapp: Any, parts: Parts, scenario: Any) -> None:
    async def guarded() -> None:
        try:
            await scenario()
        finally:
            await parts.shell.stop()  # what Backlot launched stops with it

    try:
        run_in_qasync(qapp, guarded(), timeout=180)
    finally:
        parts.close()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_a_launch_entrys_card_starts_runs_as_one_card_with_its_console_and_stop_stops_it(
        qapp: Any, qtbot: Any, tmp_path: Path) -> None:
    specs, _ = demo.launch_specs(tmp_path / "standins", 1.0, ("comfyui",))
    settings = _settings()
    settings.launch = {n: LaunchEntry.model_validate({**d, "start": "on-demand"}) for n, d in specs.items()}
    parts = assemble(settings)
    window, shell = parts.window, parts.shell
    qtbot.addWidget(window)

    async def scenario() -> None:
        window.show()
        await shell.start()
        dash, console = window.dashboard, window.launch_console
        card = dash.launch_card("demo-comfyui")
        assert card is not None and card.state == "stopped" and card.light.text() == "○ stopped"
        assert card.start_button.isEnabled() and not card.stop_button.isEnabled()
        assert window.overall.text().endswith("no services")  # a stopped entry is not counted as a service down
        seen: list[tuple[str, str, str]] = []
        shell.bridge.launch_updated.connect(lambda v: seen.append((v.state, card.light.text(), card.tail.text())))
        card.start_button.click()
        await until(lambda: card.state == "up", 60)
        # while it started, the card said so with the console's last lines
        assert any(light == "◔ starting" and "[backlot] started:" in tail for state, light, tail in seen
                   if state == "starting"), seen
        # one card: the discovered service joined the entry's card
        assert list(dash.cards) == [card.key] and card.record is not None and card.record.id == card.launch.service_id
        assert card.stop_button.isEnabled() and not card.start_button.isEnabled() and card.launch.pid is not None
        assert "demo-comfyui (demo) · started on demand · restarts on crash · pid" in card.launch_info.text()
        assert window.overall.text().endswith("1 up")
        # the console follows it live (it is the first launched entry, so it is shown), and Copy copies it all
        window.show_console()
        assert console.name == "demo-comfyui" and window.services_tabs.currentWidget() is console
        await until(lambda: "BACKLOT-STANDIN-READY" in console.text())
        console.copy()
        assert QGuiApplication.clipboard().text() == console.text() and "[backlot] ready on" in console.text()
        pid = card.launch.pid
        card.stop_button.click()
        await until(lambda: card.state == "stopped", 30)
        assert _gone(pid) and card.launch.pid is None and card.detail.text() == "stopped on request"
        await until(lambda: "stopped on request" in console.text())
        assert console.state.text() == "○ stopped"

    _run(qapp, parts, scenario)


def test_a_failing_command_shows_failed_with_its_last_lines_and_a_crash_loop_its_restarts(
        qapp: Any, qtbot: Any) -> None:
    settings = _settings()
    settings.launch = {"broken": _python_entry(BROKEN, start="with-backlot", restart="never"),
                       "crashy": _python_entry(BROKEN, kind="llm", start="with-backlot", restart="on-crash")}
    parts = assemble(settings)
    window, shell = parts.window, parts.shell
    qtbot.addWidget(window)

    async def scenario() -> None:
        dash = window.dashboard
        crashy: list[tuple[str, str, str]] = []

        def follow(view: LaunchView) -> None:
            card = dash.launch_card(view.name)
            if view.name == "crashy" and card is not None:
                crashy.append((card.light.text(), card.detail.text(), card.launch_info.text()))

        shell.bridge.launch_updated.connect(follow)
        window.show()
        await shell.start()
        broken, loop = dash.launch_card("broken"), dash.launch_card("crashy")
        assert broken is not None and loop is not None
        await until(lambda: broken.state == "failed" and loop.state == "failed", 60)
        assert broken.light.text() == "○ failed" and "exited (code 1)" in broken.detail.text()
        assert broken.tail.isVisibleTo(broken)
        assert broken.tail.text().splitlines()[-1] == "ModuleNotFoundError: No module named torchsde"
        assert broken.start_button.isEnabled() and broken.restart_button.isEnabled()
        assert not broken.stop_button.isEnabled()
        # on-crash: restarting after its exit code, twice, then the crash loop stops it
        assert any(light == "◔ restarting" and "code 1" in detail for light, detail, _ in crashy), crashy
        assert "crash loop" in loop.detail.text() and "restarts: 2" in loop.launch_info.text()
        assert "○ failed" in window.strip.items[broken.key].text()
        assert window.overall.text().endswith("2 down")
        # its console: the lines, a search that marks and selects the match
        console = window.launch_console
        dash.select_launch("broken")
        assert broken.is_selected and console.name == "broken"
        assert "No module named torchsde" in console.text() and "[backlot] exited (code 1)" in console.text()
        console.search.setText("torchsde")
        assert console.highlighted() == 2 and console.matches.text() == "2 matches"  # the command, and what it said
        assert console.view.textCursor().block().text().startswith("[backlot] started:")
        assert console.find_next() and console.view.textCursor().selectedText() == "torchsde"
        assert console.view.textCursor().block().text() == "ModuleNotFoundError: No module named torchsde"
        assert not console.follow.isChecked()  # a match in view stays in view

    _run(qapp, parts, scenario)


def test_the_console_panel_is_bounded_follows_searches_and_copies(qtbot: Any) -> None:
    panel = LaunchConsole(limit=50)
    qtbot.addWidget(panel)
    panel.resize(600, 300)
    panel.show()
    assert not panel.copy_button.isEnabled()  # nothing chosen: it teaches how to choose
    panel.show_entry("comfyui", [ConsoleLine(n, f"line {n}") for n in range(1, 31)], "starting")
    assert panel.line_count() == 30 and panel.state.text() == "◔ starting"
    panel._on_output("other", (ConsoleLine(31, "not mine"),))
    panel._on_output("comfyui", tuple(ConsoleLine(n, f"line {n}") for n in range(25, 201)))  # 25-30 again: dropped
    text = panel.text().splitlines()
    assert panel.line_count() == 50 and text[0] == "line 151" and text[-1] == "line 200"  # the core's ring, no more
    bar = panel.view.verticalScrollBar()
    assert bar.value() == bar.maximum() > 0  # Follow keeps the end in view
    panel.follow.setChecked(False)
    bar.setValue(0)
    panel._on_output("comfyui", tuple(ConsoleLine(n, f"line {n}") for n in range(201, 211)))
    assert bar.value() == 0  # not following: reading stays where it is
    panel.search.setText("line 20")
    assert panel.highlighted() == 10  # lines 161-210 are kept: "line 200" … "line 209"
    assert panel.view.textCursor().selectedText() == "line 20"
    first = panel.view.textCursor().position()
    assert panel.find_next() and panel.view.textCursor().position() > first
    cursor = panel.view.textCursor()
    cursor.movePosition(QTextCursor.MoveOperation.StartOfBlock)
    cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
    panel.view.setTextCursor(cursor)
    with qtbot.waitSignal(panel.copied) as copied:
        panel.copy_button.click()
    assert copied.args == [1] and QGuiApplication.clipboard().text() == cursor.selectedText()
    panel.view.setTextCursor(QTextCursor(panel.view.document()))  # no selection: the whole console
    panel.copy()
    assert QGuiApplication.clipboard().text() == panel.text() and panel.text().count("\n") == 49


def _view(name: str, kind: str, port: int, state: str = "running", **kw: Any) -> LaunchView:
    base: dict[str, Any] = dict(message=f"{state} (pid 4242)", pid=4242, host="127.0.0.1", url=f"http://127.0.0.1:{port}",
                                service_id=f"{kind}@127.0.0.1:{port}", restarts=0, last_exit=None, start="on-demand",
                                restart="on-crash", keep_running=False, adopted=False, demo=False, holder="",
                                command=f"python main.py --port {port}", tail=())
    return LaunchView(name, kind, state, **{**base, **kw}, port=port)


def _rec(kind: str, port: int, **kw: Any) -> ServiceRecord:
    return ServiceRecord(kind=kind, host="127.0.0.1", port=port, base_url=f"http://127.0.0.1:{port}",
                         protocol=kw.pop("protocol", "mcp"), **kw)


def _entries_only(*entries: tuple[str, str, int]) -> Parts:
    """The window over a core that knows these launch entries but runs nothing: the test publishes the events."""
    settings = load_settings()
    settings.launch = {name: LaunchEntry(kind=kind, command=["python", "main.py"], port=port)
                       for name, kind, port in entries}
    parts = assemble(settings)
    parts.shell.center.launcher.sync()
    return parts


def test_restart_with_mcp_is_offered_only_for_a_launched_web_ui_only_wan2gp(qtbot: Any) -> None:
    parts = _entries_only(("wan2gp", "wan2gp", 7860), ("wan-mcp", "wan2gp", 7880), ("rvc", "rvc", 7865),
                          ("demo-wan2gp-webui", "wan2gp", 7890))
    qtbot.addWidget(parts.window)
    bus, dash = parts.shell.bus, parts.window.dashboard
    webui = dict(protocol="gradio", usable=False, details={"webui_only": True},
                 hint="start Wan2GP with `--mcp --mcp-transport streamable-http` so Backlot can drive it")
    try:
        bus.publish(LaunchUpdated(_view("wan2gp", "wan2gp", 7860)))
        bus.publish(ServiceDiscovered(_rec("wan2gp", 7860, **webui)))  # launched, web UI only: offered
        bus.publish(ServiceDiscovered(_rec("wan2gp", 7870, **webui)))  # the same, not launched: nothing to restart
        bus.publish(LaunchUpdated(_view("wan-mcp", "wan2gp", 7880)))
        bus.publish(ServiceDiscovered(_rec("wan2gp", 7880)))  # launched with its MCP server already
        bus.publish(LaunchUpdated(_view("rvc", "rvc", 7865)))
        bus.publish(ServiceDiscovered(_rec("rvc", 7865, protocol="gradio", usable=False, hint="not usable")))
        bus.publish(LaunchUpdated(_view("demo-wan2gp-webui", "wan2gp", 7890, demo=True)))
        bus.publish(ServiceDiscovered(_rec("wan2gp", 7890, **webui)))  # the demo's web UI stand-in has no MCP server
        cards = dash.cards
        assert len(cards) == 5  # a launched service shows one card, not two
        offered = {sid for sid, c in cards.items() if not c.mcp_button.isHidden() and c.launch_row.isVisibleTo(c)}
        assert offered == {"wan2gp@127.0.0.1:7860"}
        webui_card = cards["wan2gp@127.0.0.1:7860"]
        assert webui_card.light.text() == "◐ degraded" and "--mcp" in webui_card.detail.text()
        assert cards["wan2gp@127.0.0.1:7870"].launch_row.isHidden()
        bus.publish(LaunchUpdated(_view("wan2gp", "wan2gp", 7860, state="starting")))  # not while it starts
        assert webui_card.mcp_button.isHidden() and webui_card.light.text() == "◔ starting"
        with qtbot.waitSignal(dash.launch_requested) as asked:
            webui_card.stop_button.click()
        assert asked.args == ["stop", "wan2gp"]
    finally:
        parts.shell.bridge.close()
        parts.tray.hide()


def test_a_card_says_blocked_with_the_holder_and_restarting_after_the_exit_code(qtbot: Any) -> None:
    parts = _entries_only(("comfyui", "comfyui", 8188))
    qtbot.addWidget(parts.window)
    bus, dash = parts.shell.bus, parts.window.dashboard
    try:
        bus.publish(LaunchUpdated(_view("comfyui", "comfyui", 8188, state="blocked", pid=None, holder="python3 (pid 77)",
                                        message="port 8188 is held by python3 (pid 77), which Backlot did not start; "
                                                "stop it, or give this entry another port")))
        card = dash.launch_card("comfyui")
        assert card is not None and card.light.text() == "◐ blocked" and "python3 (pid 77)" in card.detail.text()
        assert card.start_button.isEnabled() and not card.stop_button.isEnabled()
        exit1 = ExitInfo(1, 0.0, False)
        bus.publish(LaunchUpdated(_view("comfyui", "comfyui", 8188, state="restarting", restarts=1, last_exit=exit1,
                                        message="restarting in 1 s after it exited (code 1)",
                                        tail=("[backlot] exited (code 1)",))))
        assert card.light.text() == "◔ restarting" and card.detail.text().endswith("after it exited (code 1)")
        assert "restarts: 1" in card.launch_info.text() and card.tail.text() == "[backlot] exited (code 1)"
        assert parts.window.strip.items[card.key].text().startswith("◔ restarting")
        assert parts.window.overall.text().endswith("1 starting")
    finally:
        parts.shell.bridge.close()
        parts.tray.hide()


def test_settings_add_from_a_folder_checks_what_is_typed_saves_and_applies_at_once(
        qapp: Any, qtbot: Any, tmp_path: Path, backlot_home: Path) -> None:
    checkout = tmp_path / "ComfyUI"
    (checkout / "comfy").mkdir(parents=True)
    (checkout / "main.py").write_text("print('ComfyUI')\n")
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "python").write_text("")  # its own Python, as a real checkout has
    config = backlot_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# my studio\nhosts = []\n", encoding="utf-8")
    parts = assemble(_settings())
    window, shell = parts.window, parts.shell
    qtbot.addWidget(window)

    async def scenario() -> None:
        window.show()
        await shell.start()
        assert shell.console is not None
        dialog = shell.console.open_settings(window)
        editor = dialog.launch
        assert editor.rows == [] and not editor.remove_button.isEnabled()
        editor.add_from_folder(str(tmp_path / "nothing-here"))
        await until(lambda: "is not a folder" in editor.status.text())
        editor.add_from_folder(str(checkout))
        await until(lambda: len(editor.rows) == 1)
        row = editor.rows[0]
        venv_python = str(checkout.resolve() / "venv" / "bin" / "python")
        assert row.name == "comfyui" and row.kind == "comfyui" and row.cwd == str(checkout.resolve())
        assert row.argv()[:2] == [venv_python, "main.py"] and row.argv()[row.argv().index("--port") + 1] == row.port
        assert editor.command.text() == row.command and f"runs with {venv_python}" in editor.note.text()
        save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
        assert save.isEnabled() and dialog.tabs.currentWidget() is editor
        # bad input: a sentence, Save blocked, nothing typed is lost
        port = row.port
        editor.port.setText("70000")
        assert dialog.problem.text() == "Cannot save: 'comfyui': the port must be a number from 1 to 65535, got '70000'"
        assert not save.isEnabled() and editor.port.property("invalid")
        editor.port.setText(port)
        assert editor.rows[0].port == port and not dialog.problem.text()
        command = editor.command.text()
        editor.command.setText("")
        assert "'comfyui': the command is empty" in dialog.problem.text() and not save.isEnabled()
        editor.command.setText(command)
        editor.add_blank()
        assert editor.rows[1].name == "backend" and editor.current() == 1
        for edit, text in ((editor.name, "comfyui"), (editor.command, f"{sys.executable} -c pass"), (editor.port, port)):
            edit.setText(text)
        problems = editor.problems()
        assert "two entries are named 'comfyui'; give each its own name" in problems
        assert f"'comfyui' and 'comfyui' both use port {port}; give one another port" in problems
        assert not save.isEnabled() and editor.rows[0].command == command  # the first entry is as it was
        # the second one becomes a backend that starts with Backlot (and never answers)
        sleeper_port = str(free_port())
        editor.name.setText("sleeper")
        editor.port.setText(sleeper_port)
        editor.command.setText(f"{sys.executable} -c \"{SLEEPER}\"")
        editor.start.setCurrentIndex(editor.start.findData("with-backlot"))
        assert save.isEnabled() and not dialog.problem.text()
        closed = asyncio.Event()
        dialog.finished.connect(lambda _: closed.set())
        dialog.save()
        await asyncio.wait_for(closed.wait(), 20)
        saved = tomllib.loads(config.read_text(encoding="utf-8"))
        assert config.read_text(encoding="utf-8").startswith("# my studio")
        assert saved["launch"]["comfyui"]["command"] == row.argv() and saved["launch"]["comfyui"]["port"] == int(port)
        assert saved["launch"]["sleeper"]["start"] == "with-backlot"
        # applied at once: both cards are there, the one that starts with Backlot is starting
        dash = window.dashboard
        await until(lambda: dash.launch_card("comfyui") is not None and dash.launch_card("sleeper") is not None)
        assert dash.launch_card("comfyui").state == "stopped"
        sleeper = dash.launch_card("sleeper")
        await until(lambda: sleeper.state == "starting" and sleeper.launch.pid is not None)
        pid = sleeper.launch.pid
        assert load_settings().launch["comfyui"].command == row.argv()  # the next start reads the same
        # removing it stops it and takes its card away
        dialog = shell.console.open_settings(window)
        editor = dialog.launch
        assert [r.name for r in editor.rows] == ["comfyui", "sleeper"]
        editor.select(1)
        editor.remove_selected()
        closed = asyncio.Event()
        dialog.finished.connect(lambda _: closed.set())
        dialog.save()
        await asyncio.wait_for(closed.wait(), 20)
        await until(lambda: dash.launch_card("sleeper") is None and _gone(pid), 30)
        assert "sleeper" not in tomllib.loads(config.read_text(encoding="utf-8"))["launch"]
        assert list(dash.launches) == ["comfyui"]

    _run(qapp, parts, scenario)


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("gradio") is None, reason="needs gradio (the web UI)")
def test_restart_with_mcp_brings_a_web_ui_only_wan2gp_back_drivable_and_saves_it(
        qapp: Any, qtbot: Any, tmp_path: Path, backlot_home: Path) -> None:
    (tmp_path / "wgp.py").write_text(WGP)
    port = free_port()
    settings = _settings()
    settings.launch = {"wan2gp": LaunchEntry(
        kind="wan2gp", command=[sys.executable, "wgp.py", "--server-port", str(port)], cwd=tmp_path, port=port,
        start="with-backlot", env={"PYTHONPATH": str(IMPORT_ROOT)}, ready_timeout=90)}
    parts = assemble(settings)
    window, shell = parts.window, parts.shell
    qtbot.addWidget(window)
    config = backlot_home / "config" / "config.toml"

    async def scenario() -> None:
        window.show()
        await shell.start()
        card = window.dashboard.launch_card("wan2gp")
        assert card is not None
        await until(lambda: card.state == "degraded" and card.record is not None, 90)
        assert card.record.details.get("webui_only") and not card.mcp_button.isHidden()
        card.mcp_button.click()
        await until(lambda: card.state == "up" and card.record is not None and card.record.protocol == "mcp", 90)
        assert card.mcp_button.isHidden() and list(window.dashboard.cards) == [card.key]
        saved = tomllib.loads(config.read_text(encoding="utf-8"))["launch"]["wan2gp"]
        assert "--mcp" in saved["command"] and "--server-port" not in saved["command"]
        assert saved["command"][saved["command"].index("--mcp-port") + 1] == str(port)
        assert load_settings().launch["wan2gp"].command == settings.launch["wan2gp"].command

    _run(qapp, parts, scenario)
