"""The job console driven through ConsoleController against a real ControlCenter on the ComfyUI stand-in.

qasync makes Qt and asyncio one loop, as in the app: the scenario runs as a coroutine on it.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio  # noqa: E402
import gc  # noqa: E402
import tomllib  # noqa: E402
from collections.abc import Callable, Coroutine, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import qasync  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402

from backlot.app.console_controller import ConsoleController  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.control import ControlCenter  # noqa: E402
from backlot.services.events import JobUpdated  # noqa: E402
from backlot.services.models import JobState  # noqa: E402
from tests.helpers import EventWaiter  # noqa: E402
from backlot.widgets.api_panel import ApiPanel  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def qloop(qapp: Any) -> Iterator[qasync.QEventLoop]:
    qapp.setQuitOnLastWindowClosed(False)  # a closing dialog must not end the loop (the app has its main window)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    # Collect this loop's leftovers now: qasync's Qt timers and notifiers, freed by the garbage collector while a
    # later test's loop is running, crash Qt (seen as a segfault a few tests later). The app has one loop, so only
    # tests that make a loop per test need this.
    gc.collect()
    asyncio.set_event_loop(None)


def run(loop: qasync.QEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return loop.run_until_complete(asyncio.wait_for(coro, 120))


async def until(condition: Callable[[], Any], timeout: float = 10) -> None:
    """Wait for a widget to reach a state the controller puts it in from a task (checked every 20 ms)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def console_on(url: str, qtbot: Any, api_panel: ApiPanel | None = None) -> tuple[ControlCenter, ConsoleController]:
    settings = load_settings(cli={"urls": [url], "scan_default_ports": False, "discovery_budget": 1.0,
                                  "health_interval": 0.5})
    center = ControlCenter(settings)
    await center.start()
    console = ConsoleController.build_console(center)
    qtbot.addWidget(console)
    controller = ConsoleController(center, console, api_panel)
    # What app/bridge.py does in the window: job snapshots from the bus into the controller.
    controller._unsubscribe = center.bus.subscribe(lambda e: controller._on_job_updated(e.job), JobUpdated)
    await controller.start()
    return center, controller


async def shut(center: ControlCenter, controller: ConsoleController) -> None:
    controller._unsubscribe()
    await controller.close()
    await center.stop()


def test_route_explanation_changes_when_the_pin_or_task_changes(qloop: Any, qtbot: Any, standin: Any) -> None:
    sp = standin("comfyui")
    sid = f"comfyui@127.0.0.1:{sp.port}"

    async def scenario() -> None:
        center, controller = await console_on(sp.url, qtbot)
        form = controller.console.form
        try:
            form.set_task("text_to_image")  # the router answers off the loop (the job's workflow is read there)
            await until(lambda: form.route_label.text().startswith(f"→ {sid}: "))
            assert "pinned" not in form.route_label.text()
            form.set_backend(sid)
            await until(lambda: form.route_label.text().startswith(f"→ {sid}: pinned; queue 0"))
            form.set_task("voice_conversion")  # no RVC here: the router says so before anything is submitted
            assert form.backend == "auto"
            await until(lambda: form.route_label.text() == ("✕ no backend can run this now: no backend that can run "
                                                            "voice_conversion is available (wanted: rvc)"))
            form.set_task("upscale")
            await until(lambda: form.route_label.text().startswith(f"→ {sid}: "))
            form.set_task("text_to_image")
            form.prompt.setPlainText("a lighthouse")
            form.fields["workflow"].set_value("no_such_flow")  # the core reads the templates, off the loop
            await until(lambda: form.schema_problem)
            assert "no_such_flow" in form.problem_label.text() and not form.generate.isEnabled()
            form.fields["workflow"].set_value("standin_progress")  # its bindings add their parameters
            await until(lambda: "seconds" in form.fields)
            assert form.fields["seconds"].raw() == 2.0 and form.generate.isEnabled() and not form.schema_problem
        finally:
            await shut(center, controller)

    run(qloop, scenario())


def test_cancel_from_the_context_menu_reaches_the_job_manager(qloop: Any, qtbot: Any, standin: Any) -> None:
    sp = standin("comfyui")

    async def scenario() -> None:
        center, controller = await console_on(sp.url, qtbot)
        table = controller.console.table
        waiter = EventWaiter(center.bus, JobUpdated)
        try:
            form = controller.console.form
            form.set_task("text_to_image")
            form.prompt.setPlainText("hold still")
            form.fields["workflow"].set_value("standin_progress")  # the stand-in's StandinSleep node
            await until(lambda: "seconds" in form.fields)
            form.fields["seconds"].widget.setValue(60)
            form.submit()
            ev = await waiter.wait(lambda e: e.job.status.fraction, 30)
            job_id = ev.job.id
            row = table.jobs.row_of(job_id)
            assert row is not None and table.jobs.job(row).state is JobState.RUNNING
            assert table.selected_job() is not None and table.selected_job().id == job_id  # the new job is selected
            actions = {a.text(): a for a in table.context_menu_for(table.jobs.job(row)).actions()}
            actions["Cancel"].trigger()
            await waiter.wait(lambda e: e.job.id == job_id and e.job.state is JobState.CANCELLED, 30)
            stored = await center.store.get(job_id)
            assert stored is not None and stored.state is JobState.CANCELLED
            assert table.jobs.index(table.jobs.row_of(job_id), 4).data() == "○ cancelled"
        finally:
            waiter.close()
            await shut(center, controller)

    run(qloop, scenario())


def test_preview_shows_the_png_of_a_finished_image_job(qloop: Any, qtbot: Any, standin: Any) -> None:
    sp = standin("comfyui", speed=5)

    async def scenario() -> None:
        center, controller = await console_on(sp.url, qtbot)
        console, waiter = controller.console, EventWaiter(center.bus, JobUpdated)
        console.resize(900, 1000)
        console.show()
        try:
            form = console.form
            form.set_task("text_to_image")
            form.prompt.setPlainText("a lighthouse at dusk")
            form.fields["width"].widget.setValue(96)
            form.fields["height"].widget.setValue(64)
            form.fields["steps"].widget.setValue(2)
            form.submit()
            done = await waiter.wait(lambda e: e.job.state.terminal, 60)
            assert done.job.state is JobState.SUCCEEDED, done.job.status
            png = Path(done.job.outputs[0].path)
            with Image.open(png) as image:
                size = image.size
            assert size == (96, 64)
            preview = console.preview
            await until(lambda: preview.kind == "image")  # loaded off the loop by the controller
            assert preview.job_id == done.job.id and png.name in preview.info.text()
            pixmap = preview.pane.label.pixmap()
            assert not pixmap.isNull() and pixmap.width() / pixmap.height() == pytest.approx(96 / 64, abs=0.05)
            # the status beside Generate followed the job to its end (it said "queued" for good before)
            await until(lambda: form.status_label.text().startswith(f"#{done.job.seq} succeeded in "))
        finally:
            waiter.close()
            await shut(center, controller)

    run(qloop, scenario())


def test_settings_saved_keep_the_users_comments(qloop: Any, qtbot: Any, backlot_home: Path, caplog: Any) -> None:
    config = backlot_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# my studio's settings\nhosts = [\"gpu-box\"]  # the render box\n\n"
                      "[ports]\n# our second ComfyUI\ncomfyui = [8288]\n", encoding="utf-8")

    async def scenario() -> None:
        center = ControlCenter(load_settings())
        console = ConsoleController.build_console(center)
        qtbot.addWidget(console)
        controller = ConsoleController(center, console)
        dialog = controller.open_settings()
        assert dialog.isVisible() and dialog.hosts.text() == "gpu-box"
        dialog.seconds["discovery_interval"].setValue(120)
        dialog.ports["rvc"].setText("5051")
        dialog.keys["openai"].setText("sk-very-secret")
        dialog.save()
        await until(lambda: dialog.restart_needed)  # a key takes a restart: the dialog stays open and says so
        assert dialog.restart_needed == ["the LLM keys"] and dialog.isVisible()
        assert "Restart Backlot to apply the LLM keys (the rest applies now)" in dialog.outcome.text()
        assert center.settings.discovery_interval == 120 and center.settings.ports["rvc"] == [5051]
        assert not dialog.keys["openai"].text()  # saved: the typed key is not kept in the field
        dialog.reject()
        await controller.close()

    run(qloop, scenario())
    text = config.read_text(encoding="utf-8")
    assert "# my studio's settings" in text and "# the render box" in text and "# our second ComfyUI" in text
    assert tomllib.loads(text)["ports"] == {"comfyui": [8288], "rvc": [5051]}
    s = load_settings()
    assert s.discovery_interval == 120 and s.hosts == ["gpu-box"] and s.llm_keys["openai"].get_secret_value()
    assert config.stat().st_mode & 0o077 == 0  # it holds a key now: owner only
    assert "sk-very-secret" not in caplog.text
    assert not list(config.parent.glob(".config.toml.*"))  # no temp file left behind


def test_api_panel_shows_clients_and_copies_the_token_without_showing_it(qloop: Any, qtbot: Any) -> None:
    panel = ApiPanel()
    qtbot.addWidget(panel)

    async def scenario() -> str:
        center = ControlCenter(load_settings(cli={"api_port": 0, "scan_default_ports": False}), serve_api=True,
                               discover_on_start=False)
        console = ConsoleController.build_console(center)
        qtbot.addWidget(console)
        controller = ConsoleController(center, console, panel)
        controller._on_api_tick()
        assert not panel.copy_button.isEnabled() and "not serving" in panel.state.text()
        await center.start()
        assert center.api is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", center.api.port)  # a Blender-style client
        try:
            await until(lambda: center.api is not None and center.api.connections == 1)
            controller._on_api_tick()
            assert panel.address.text() == f"127.0.0.1:{center.api.port}" and panel.clients.text() == "· 1 client"
            panel.copy_button.click()
            await until(panel.note.text)
        finally:
            writer.close()
            await writer.wait_closed()
            await controller.close()
            await center.stop()
        return center.settings.paths.token_file.read_text(encoding="utf-8").strip()

    token = run(qloop, scenario())
    assert len(token) > 20 and QGuiApplication.clipboard().text() == token
    assert panel.note.text() == "token copied"
    assert all(token not in w.text() for w in (panel.state, panel.address, panel.clients, panel.note))


def test_the_preview_shows_the_running_jobs_latest_latent_preview(qloop: Any, qtbot: Any, standin: Any) -> None:
    from backlot.app.bridge import Bridge

    sp = standin("comfyui")

    async def scenario() -> None:
        center, controller = await console_on(sp.url, qtbot)
        bridge = Bridge(center.bus)
        controller.bind(bridge)  # job.previewed reaches the controller through the bridge, as in the window
        preview = controller.console.preview
        controller.console.resize(900, 700)
        controller.console.show()
        try:
            await controller._submit("text_to_image", "a lighthouse", {"workflow": "standin_progress", "seconds": 3},
                                     [], "auto")
            selected = controller.console.table.selected_job()
            assert selected is not None
            job_id = selected.id
            await until(lambda: preview.kind == "image" and preview.info.text().endswith("live preview"), 30)
            assert preview.job_id == job_id and not preview.pane.label.pixmap().isNull()
            job = center.jobs.known(job_id)
            assert job is not None and job.state is JobState.RUNNING
            shot = os.environ.get("PREVIEW_SHOT")
            if shot:
                controller.console.grab().save(shot)
            await center.jobs.wait(job_id, 30)
            await until(lambda: "live preview" not in preview.info.text() and preview.kind == "image", 10)
            assert preview.info.text().endswith(".png")  # the result replaced the live preview
        finally:
            bridge.close()
            await shut(center, controller)

    run(qloop, scenario())
