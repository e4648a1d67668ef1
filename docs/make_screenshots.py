"""Regenerate the screenshots in docs/ offscreen on the demo stand-ins: each page, settings, a workflow's preview,
and a backend Backlot launched (its card and console, and its entry in the settings).

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from backlot.app.assemble import Parts, assemble  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402

DOCS = ROOT / "docs"


async def until(predicate: object, timeout: float = 60.0) -> None:
    """Poll a condition the window's events make true."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        await asyncio.sleep(0.1)


async def generate(window: Any, task: str, prompt: str) -> str:
    """Submit from the Create page's form; the new job's id once it has succeeded."""
    form, table = window.console.form, window.console.table
    before = table.jobs.rowCount()
    form.set_task(task)
    form.prompt.setPlainText(prompt)
    form.submit()
    await until(lambda: table.jobs.rowCount() > before)
    await until(lambda: table.jobs.job(0).state.value == "succeeded", 120)
    return str(table.jobs.job(0).id)


async def shoot(parts: Parts) -> None:
    """The demo stand-ins, jobs from the Create page, and one PNG per page (UI.md): Create with a finished image,
    Create with a video playing, Queue, Services; then the settings dialog and a workflow's live preview."""
    shell, window = parts.shell, parts.window
    window.resize(1440, 900)
    window.show()
    await shell.start(demo=True)
    await shell.wait_health_round()
    viewer = window.console.viewer
    await generate(window, "text_to_image", "A lighthouse at dusk, storm clouds, slow dolly in")
    await until(lambda: viewer.kind == "image")
    await asyncio.sleep(1.0)  # the gallery's thumbnails
    window.grab().save(str(DOCS / "create.png"))
    await generate(window, "text_to_video", "Waves break on the lighthouse rocks at dusk")
    await until(lambda: viewer.kind == "video" and viewer.player is not None and viewer.player.frame_count > 0)
    viewer.player.play()
    await asyncio.sleep(1.2)  # mid-clip, the scrub bar moved on
    window.grab().save(str(DOCS / "create-video.png"))
    viewer.player.pause()
    window.show_page(window.PAGES.index("Queue"))
    window.console.table.select_job(window.console.table.jobs.job(0).id)
    await asyncio.sleep(0.5)
    window.grab().save(str(DOCS / "queue.png"))
    window.show_page(window.PAGES.index("Services"))
    await asyncio.sleep(6)  # a few health rounds draw the latency lines
    window.graphs.set_window(60.0)
    await asyncio.sleep(0.5)
    window.grab().save(str(DOCS / "services.png"))
    window.show_page(window.PAGES.index("Create"))
    await shoot_workflow(parts)
    assert shell.console is not None
    dialog = shell.console.open_settings(window)
    await asyncio.sleep(0.5)
    dialog.grab().save(str(DOCS / "settings.png"))
    dialog.close()
    await shoot_launch(parts)
    window.close()
    await shell.stop()


async def shoot_launch(parts: Parts) -> None:
    """A second ComfyUI that Backlot starts itself: its card and console on the Services page, its entry in the
    settings dialog."""
    from backlot.services.launch.entry import LaunchEntry
    from backlot.standins import demo

    shell, window = parts.shell, parts.window
    specs, _ = demo.launch_specs(shell.settings.data_path / "launched", 1.0, ("comfyui",))
    entry = LaunchEntry.model_validate({**specs["demo-comfyui"], "demo": False, "start": "with-backlot"})
    window.show_page(window.PAGES.index("Services"))
    await shell.center.application.launch_add({"comfyui": entry})
    dash = window.dashboard
    await until(lambda: dash.launch_card("comfyui") is not None and dash.launch_card("comfyui").state == "up")
    dash.select_launch("comfyui")
    window.show_console()
    await asyncio.sleep(1.0)
    window.grab().save(str(DOCS / "services-launch.png"))
    # and one added from a folder (a ComfyUI checkout with its own venv, as an artist has it), not started
    from backlot.services.launch import presets

    checkout = shell.settings.data_path.parent / "films" / "ComfyUI"
    (checkout / "comfy").mkdir(parents=True)
    (checkout / "main.py").write_text("")
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "python").write_text("")
    made = presets.from_folder(checkout, taken=frozenset(shell.settings.launch))
    await shell.center.application.launch_add({"studio": made.entry}, start=False)
    assert shell.console is not None
    dialog = shell.console.open_settings(window)
    dialog.tabs.setCurrentWidget(dialog.launch)
    dialog.launch.select(dialog.launch.table.rowCount() - 1)
    await asyncio.sleep(0.5)
    dialog.grab().save(str(DOCS / "settings-launch.png"))
    dialog.close()


async def shoot_workflow(parts: Parts) -> None:
    """A user's own workflow (imported by dropping it) running, its latest latent preview in the console."""
    window, center = parts.window, parts.shell.center
    flows = center.settings.paths.config_dir / "workflows"
    flows.mkdir(parents=True, exist_ok=True)
    built_in = ROOT / "resources" / "workflows"
    dropped = Path(tempfile.mkdtemp()) / "night_harbour.json"
    shutil.copy(built_in / "text_to_image.json", dropped)  # as if exported from ComfyUI with "Export (API)"
    window.console.request_import([str(dropped)])
    form = window.console.form
    await until(lambda: form.fields.get("workflow") is not None and form.fields["workflow"].raw() == "night_harbour")
    form.fields["steps"].set_value(40)
    form.prompt.setPlainText("Night harbour, lanterns on the water")
    form.submit()
    viewer = window.console.viewer
    await until(lambda: viewer.kind == "image" and viewer.showing_live(window.console.table.jobs.job(0).id))
    await asyncio.sleep(1.5)
    window.grab().save(str(DOCS / "workflow.png"))
    table = window.console.table
    await until(lambda: table.jobs.job(0).state.value == "succeeded", 120)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(["backlot"])
    app.setQuitOnLastWindowClosed(False)
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=home, cli={"api_port": 0, "scan_default_ports": False,
                                                 "health_interval_visible": 1.0})
        parts = assemble(settings)
        loop = qasync.QEventLoop(app)
        try:
            loop.run_until_complete(shoot(parts))
        finally:
            loop.close()
        parts.close()
    for name in ("create", "create-video", "queue", "services", "workflow", "settings", "services-launch",
                 "settings-launch"):
        path = DOCS / f"{name}.png"
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
