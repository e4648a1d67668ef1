"""Regenerate the screenshots in docs/ offscreen on the demo stand-ins: dashboard, job console, settings, a workflow.

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


async def shoot(parts: Parts) -> None:
    """Demo stand-ins, a few health rounds, an image job, the settings dialog; one PNG each."""
    shell, window = parts.shell, parts.window
    window.resize(1440, 900)
    window.show()
    await shell.start(demo=True)
    await shell.wait_health_round()
    await asyncio.sleep(8)  # a few health rounds draw the latency lines
    window.graphs.set_window(60.0)
    await asyncio.sleep(0.5)
    window.grab().save(str(DOCS / "dashboard.png"))
    form = window.console.form
    form.set_task("text_to_image")
    form.prompt.setPlainText("A lighthouse at dusk, slow dolly in")
    form.submit()
    table = window.console.table
    await until(lambda: table.jobs.rowCount() >= 1 and table.jobs.job(0)["state"] == "succeeded")
    await until(lambda: window.console.preview.kind == "image")
    await asyncio.sleep(1.0)
    window.grab().save(str(DOCS / "console.png"))
    await shoot_workflow(parts)
    assert shell.console is not None
    dialog = shell.console.open_settings(window)
    await asyncio.sleep(0.5)
    dialog.grab().save(str(DOCS / "settings.png"))
    dialog.close()
    window.close()
    await shell.stop()


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
    preview = window.console.preview
    await until(lambda: preview.kind == "image" and preview.info.text().endswith("live preview"))
    await asyncio.sleep(1.5)
    window.grab().save(str(DOCS / "workflow.png"))
    table = window.console.table
    await until(lambda: table.jobs.job(0)["state"] == "succeeded")


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
    for name in ("dashboard", "console", "workflow", "settings"):
        path = DOCS / f"{name}.png"
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
