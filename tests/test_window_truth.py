"""The window tells the truth: settings apply when saved (a new URL is probed at once, a restart-only setting is
named), and every icon it uses renders (pytest-qt, offscreen; a real stand-in where a backend is needed)."""
from __future__ import annotations

import asyncio
import os
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from backlot.app.assemble import assemble  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.widgets.icons import USED, icon, icon_path  # noqa: E402
from backlot.widgets.style import STATES, state_icon  # noqa: E402
from tests.qt_helpers import run_in_qasync, until  # noqa: E402


@pytest.mark.slow
def test_settings_add_a_url_the_window_shows_at_once_and_name_what_needs_a_restart(qapp: Any, qtbot: Any,
                                                                                   standin: Any) -> None:
    comfy = standin("comfyui")
    settings = load_settings(cli={"scan_default_ports": False, "discovery_budget": 1.0, "health_interval": 30})
    parts = assemble(settings)
    window, shell = parts.window, parts.shell
    qtbot.addWidget(window)

    async def scenario() -> None:
        window.show()
        await shell.start()
        await until(lambda: window.dashboard.phase == "none")  # the first round found nothing: nothing is listed
        assert not window.dashboard.cards
        assert shell.console is not None
        dialog = shell.console.open_settings(window)
        dialog.urls.setText(comfy.url)
        dialog.api_port.setValue(8899)
        dialog.seconds["health_interval_visible"].setValue(7)
        dialog.save()
        await until(lambda: len(window.dashboard.cards) == 1)  # probed at once, no restart
        card = next(iter(window.dashboard.cards.values()))
        assert card.record.kind.value == "comfyui" and card.record.base_url.endswith(str(comfy.url).rsplit(":", 1)[1])
        # only the API port needs a restart, and the dialog says so by name; the rest applied
        assert dialog.isVisible() and dialog.restart_needed == ["the API port"]
        assert "Restart Backlot to apply the API port" in dialog.outcome.text()
        assert all(m.interval == 7 for m in shell.center.monitors.values())
        assert shell.center.api is not None and shell.center.api.port != 8899
        # it stays in discovery: the next round keeps it (and every later round probes the URL)
        assert comfy.url in settings.urls
        await shell.center.application.discover()
        assert list(window.dashboard.cards) == [card.record.id] and card.record.present
        dialog.reject()
        # a save with nothing that needs a restart closes the dialog and says it applied
        dialog2 = shell.console.open_settings(window)
        dialog2.seconds["discovery_budget"].setValue(1.5)
        closed = asyncio.Event()
        said: list[str] = []
        dialog2.finished.connect(lambda _: (said.append(dialog2.outcome.text()), closed.set()))
        dialog2.save()
        await asyncio.wait_for(closed.wait(), 10)  # qtbot.waitSignal would nest a Qt loop inside this task
        assert "applied now" in said[0] and settings.discovery_budget == 1.5
        await shell.stop()

    try:
        run_in_qasync(qapp, scenario())
    finally:
        parts.close()


def _painted(image: QImage) -> int:
    return sum(image.pixelColor(x, y).alpha() > 0 for x in range(image.width()) for y in range(image.height()))


@pytest.mark.parametrize("name", USED)
def test_every_icon_the_window_uses_renders(qapp: Any, name: str) -> None:
    assert icon_path(name).is_file()
    qicon = icon(name)
    assert not qicon.isNull()
    pix = qicon.pixmap(24, 24)
    assert not pix.isNull() and _painted(pix.toImage()) > 24 * 24 // 10  # not an empty box


def test_every_state_icon_renders_in_its_colour(qapp: Any) -> None:
    for state, look in STATES.items():
        image = state_icon(state).pixmap(32, 32).toImage()
        assert _painted(image) > 32 * 32 // 2, state
        assert image.pixelColor(16, 16).name() == look.color, state


def test_the_play_button_shows_an_icon_not_a_glyph_missing_from_the_font(qtbot: Any) -> None:
    from backlot.widgets.preview import PreviewPanel

    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel._show_playing(True)
    assert panel.play_button.text() == "Pause" and _painted(panel.play_button.icon().pixmap(24, 24).toImage())
    panel._show_playing(False)
    assert panel.play_button.text() == "Play" and _painted(panel.play_button.icon().pixmap(24, 24).toImage())
