"""Dropping or picking a ComfyUI workflow file in the window: imported off the GUI thread into the user's folder.

The console and its controller run on a real ControlCenter (qasync: Qt and asyncio one loop, as in the app); the
drop is a real QDropEvent carrying file URLs, sent to the widget.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QComboBox  # noqa: E402

from backlot.app.console_controller import ConsoleController  # noqa: E402
from backlot.app.window import MainWindow  # noqa: E402
from backlot.services.backends import registry  # noqa: E402
from backlot.services.backends.comfyui import library  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.control import ControlCenter  # noqa: E402
from tests.test_console_live import qloop, run, until  # noqa: E402, F401 - fixture
from tests.test_workflows import _ui  # noqa: E402

BUILTIN = Path(__file__).resolve().parents[1] / "resources" / "workflows"
pytestmark = pytest.mark.slow


def _mime(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def drop(widget: Any, *paths: Path) -> bool:
    """Drag the files over the widget and drop them; True when the widget accepted the drag."""
    mime = _mime(*paths)
    enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    QApplication.sendEvent(widget, QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                              Qt.KeyboardModifier.NoModifier))
    return True


async def console_with(qtbot: Any, urls: list[str]) -> tuple[ControlCenter, ConsoleController]:
    settings = load_settings(cli={"urls": urls, "scan_default_ports": False, "discovery_budget": 1.0,
                                  "health_interval": 0.5})
    center = ControlCenter(settings)
    await center.start()
    console = ConsoleController.build_console(center)
    qtbot.addWidget(console)
    controller = ConsoleController(center, console)
    await controller.start()
    return center, controller


def _off_main_thread(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[bool]]:
    """Record, per blocking call the import makes, whether it ran on the GUI (main) thread."""
    seen: dict[str, list[bool]] = {}

    def spy(owner: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        def wrapper(*a: Any, **kw: Any) -> Any:
            seen.setdefault(name, []).append(threading.current_thread() is threading.main_thread())
            return real(*a, **kw)

        monkeypatch.setattr(owner, name, wrapper)

    for owner, name in ((library, "read_workflow"), (library, "workflow_names"), (library, "import_workflow"),
                        (registry, "workflows")):
        spy(owner, name)
    return seen


def test_dropped_api_workflow_is_imported_listed_and_selected(qloop: Any, qtbot: Any, tmp_path: Path,
                                                               backlot_home: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "my flow.json"
    shutil.copy(BUILTIN / "standin_progress.json", src)
    seen = _off_main_thread(monkeypatch)

    async def scenario() -> None:
        center, controller = await console_with(qtbot, [])
        console, form = controller.console, controller.console.form
        try:
            form.set_task("upscale")
            assert drop(console, src)
            assert console.import_status.text() == "Importing my flow.json…"  # at once, before any file is read
            await until(lambda: form.task == "text_to_image" and form.fields["workflow"].raw() == "my_flow")
            user = backlot_home / "config" / "workflows"
            assert json.loads((user / "my_flow.json").read_text()) == json.loads(src.read_text())
            meta = json.loads((user / "my_flow.bindings.json").read_text())
            assert meta["task"] == "text_to_image" and meta["bindings"]["width"] == [["1", "width"]]
            status = console.import_status.text()
            assert status.startswith(f"Imported my_flow for text_to_image to {user / 'my_flow.json'}: binds ")
            assert "width" in status and "; no sampler" in status and f"edit {user / 'my_flow.bindings.json'}" in status
            combo = form.fields["workflow"].widget
            assert isinstance(combo, QComboBox)
            listed = [combo.itemText(i) for i in range(combo.count())]
            assert "my_flow" in listed and "standin_image" in listed and "upscale" not in listed
            # the same file again: a new name, never a silent overwrite
            assert drop(console, src)
            await until(lambda: form.fields["workflow"].raw() == "my_flow-2")
            assert "(as my_flow-2: my_flow was taken)" in console.import_status.text()
            assert (user / "my_flow-2.bindings.json").is_file()
        finally:
            await controller.close()
            await center.stop()

    run(qloop, scenario())
    assert seen["read_workflow"] and seen["import_workflow"] and seen["workflow_names"] and seen["workflows"]
    assert not any(any(calls) for calls in seen.values()), seen  # no file I/O on the GUI thread


def test_bad_files_say_why_in_one_sentence(qloop: Any, qtbot: Any, tmp_path: Path, backlot_home: Path) -> None:
    not_json, not_flow, ui_format = tmp_path / "notes.json", tmp_path / "prefs.json", tmp_path / "castle.json"
    not_json.write_text("this is not JSON")
    not_flow.write_text(json.dumps({"theme": "dark"}))
    ui_format.write_text(json.dumps(_ui()))
    (tmp_path / "clip.txt").write_text("x")

    async def scenario() -> None:
        center, controller = await console_with(qtbot, [])  # no ComfyUI: a UI-format file cannot be converted
        console = controller.console
        try:
            assert not drop(console, tmp_path / "clip.txt")  # not a .json: the drag is refused
            for path, says in ((not_json, "Could not import notes.json: the workflow file "),
                               (not_flow, "Could not import prefs.json: this file is not a ComfyUI workflow"),
                               (ui_format, ("Could not import castle.json: it is a UI-format workflow and no ComfyUI "
                                            "is running to convert it; start ComfyUI, or save it from ComfyUI with "
                                            '"Export (API)" instead.'))):
                console.import_status.setText("")
                assert drop(console, path)
                await until(lambda: console.import_status.text().startswith("✕"))
                text = console.import_status.text()
                assert text.startswith(f"✕ {says}") and text.endswith(".") and "Traceback" not in text, text
                assert text.count("\n") == 0
            assert not (backlot_home / "config" / "workflows").exists() or not any(
                (backlot_home / "config" / "workflows").iterdir())
        finally:
            await controller.close()
            await center.stop()

    run(qloop, scenario())


def test_ui_format_file_is_converted_with_a_running_comfyui(qloop: Any, qtbot: Any, tmp_path: Path,
                                                             backlot_home: Path, standin: Any) -> None:
    sp = standin("comfyui")
    src = tmp_path / "castle.json"
    src.write_text(json.dumps(_ui()))

    async def scenario() -> None:
        center, controller = await console_with(qtbot, [sp.url])
        console = controller.console
        try:
            await until(lambda: any(r.kind == "comfyui" and r.usable for r in center.services.values()))
            console.request_import([str(src)])  # what "Import workflow…" does with the picked files
            await until(lambda: console.import_status.text().startswith(("Imported", "✕")))
            assert console.import_status.text().startswith("Imported castle for text_to_image, converted from the "
                                                           "UI format, to "), console.import_status.text()
            api = json.loads((backlot_home / "config" / "workflows" / "castle.json").read_text())
            assert "nodes" not in api and api["5"]["class_type"] == "KSampler"
        finally:
            await controller.close()
            await center.stop()

    run(qloop, scenario())


def test_window_hands_dropped_workflow_files_on(qtbot: Any, tmp_path: Path) -> None:
    window = MainWindow({}, str(tmp_path / "window.ini"))
    qtbot.addWidget(window)
    flow = tmp_path / "flow.json"
    flow.write_text("{}")
    with qtbot.waitSignal(window.workflows_dropped) as got:
        assert drop(window, flow, tmp_path / "still.png")
    assert got.args == [[str(flow)]]  # only the .json files
    assert not drop(window, tmp_path / "still.png")
