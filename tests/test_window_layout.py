"""The window, output first (UI.md): pages, a full-height form, a large viewer, the gallery, compare, the strip.

Every test runs the assembled window on a qasync loop over the test's QApplication, as ``backlot`` does: the
viewer's and the gallery's files are read off the GUI thread by the app layer, so the loop must run.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QScrollArea  # noqa: E402

from backlot.app.assemble import Parts, assemble  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.models import Job, JobFailure, JobState, OutputFile  # noqa: E402
from tests.qt_helpers import run_in_qasync as run, until  # noqa: E402


@pytest.fixture
def parts(qtbot: Any) -> Any:
    """The assembled window, its core not started (jobs are fed to the console by the test)."""
    made: Parts = assemble(load_settings(cli={"scan_default_ports": False, "api_port": 0}))
    qtbot.addWidget(made.window)
    yield made
    made.shell.bridge.close()
    made.tray.hide()


def finished_image_job(tmp_path: Path, seq: int, size: tuple[int, int] = (1024, 1024), color: str = "#3070c0") -> Job:
    """A succeeded text_to_image job whose PNG is on disk."""
    png = tmp_path / f"out_{seq}.png"
    image = QImage(size[0], size[1], QImage.Format.Format_RGB32)
    image.fill(QColor(color))
    assert image.save(str(png))
    now = time.time()
    return Job(id=f"job{seq}", task="text_to_image", prompt="a lighthouse", seq=seq, state=JobState.SUCCEEDED,
               routed_to="comfyui@127.0.0.1:8188", params={"seed": 8812}, started_at=now - 12.4, finished_at=now,
               outputs=[OutputFile(png, "image/png", png.stat().st_size)])


def click_tile(parts: Parts, job_id: str, ctrl: bool = False) -> None:
    gallery = parts.window.console.gallery
    rect = gallery.visualItemRect(gallery.items[job_id])
    modifier = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    QTest.mouseClick(gallery.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def test_at_1440x900_a_finished_1024_image_shows_at_least_600_px_tall(qapp: Any, parts: Parts, tmp_path: Path) -> None:
    window, console = parts.window, parts.window.console
    window.resize(1440, 900)
    window.show()
    job = finished_image_job(tmp_path, 14)

    async def scenario() -> None:
        console._on_job(job)  # as the bridge hands a snapshot to the controller
        await until(lambda: console.viewer.kind == "image")
        await until(lambda: not console.gallery.items[job.id].icon().isNull() and job.id in console.gallery.thumbs)

    run(qapp, scenario())
    assert window.current_page() == "Create" and window.size().width() == 1440
    width, height = console.viewer.shown_size()
    assert height >= 600 and width == height, (width, height)
    info = console.viewer.info.text()
    assert info.startswith("#14 text→image · comfyui@127.0.0.1:8188 · 12.4 s · seed 8812"), info
    assert console.viewer.copy_button.isEnabled() and not console.viewer.blender_button.isEnabled()
    assert "Blender" in console.viewer.blender_button.toolTip()
    console.viewer.fit_button.setChecked(True)  # 1:1: the image at its own size, scroll bars round it
    assert console.viewer.shown_size() == (1024, 1024)


def test_at_1280x800_the_text_to_image_form_needs_no_scroll_box(qapp: Any, parts: Parts, qtbot: Any) -> None:
    window, console = parts.window, parts.window.console
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)

    async def scenario() -> None:
        console.form.set_task("text_to_image")
        await asyncio.sleep(0)

    run(qapp, scenario())
    qtbot.waitUntil(lambda: console.form_scroll.viewport().height() > 600)
    assert not console.form.findChildren(QScrollArea)  # no inner scroll box in the form
    assert not console.form_scroll.verticalScrollBar().isVisible()  # and the column needs no scrolling at all
    generate = console.form.generate
    bottom = generate.mapTo(console.form_scroll.viewport(), QPoint(0, generate.height()))
    assert bottom.y() <= console.form_scroll.viewport().height()
    route = console.form.route_label
    assert route.wordWrap() and route.y() < generate.y()  # the live route right above Generate


def test_ctrl_1_to_4_switch_pages_and_the_strip_opens_services(qapp: Any, parts: Parts, qtbot: Any) -> None:
    window = parts.window
    window.show()
    window.activateWindow()
    qtbot.waitActive(window)  # window shortcuts need the window active
    names = []
    for key in (Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4, Qt.Key.Key_1):
        QTest.keyClick(window.windowHandle(), key, Qt.KeyboardModifier.ControlModifier)  # through the shortcut map
        names.append(window.current_page())
    assert names == ["Queue", "Services", "Log", "Create"]
    assert [a.isChecked() for a in window.page_actions] == [True, False, False, False]
    window.page_actions[2].trigger()  # the toolbar's button
    assert window.pages.currentWidget() is window.services_split
    window.show_page(0)
    window.strip.service_clicked.emit("comfyui@127.0.0.1:8188")  # a strip item clicked
    assert window.current_page() == "Services"
    assert window.strip.queue.text() == "0 running, 0 queued"


def test_ctrl_click_compares_two_outputs_side_by_side(qapp: Any, parts: Parts, qtbot: Any, tmp_path: Path) -> None:
    window, console = parts.window, parts.window.console
    window.resize(1440, 900)
    window.show()
    qtbot.waitExposed(window)
    first, second = finished_image_job(tmp_path, 1, color="#c03030"), finished_image_job(tmp_path, 2, (512, 768))
    viewer = console.viewer

    async def scenario() -> None:
        console._on_job(first)
        console._on_job(second)
        assert console.gallery.job_ids() == ["job2", "job1"]  # newest first
        click_tile(parts, "job1")
        await until(lambda: viewer.job_id == "job1" and viewer.kind == "image")
        click_tile(parts, "job2", ctrl=True)
        await until(lambda: viewer.pane_a.shown_size() != (0, 0) and viewer.pane_b.shown_size() != (0, 0))

    run(qapp, scenario())
    assert viewer.stack.currentWidget() is viewer.compare and viewer.compare_id == "job2"
    a, b = viewer.pane_a, viewer.pane_b
    assert a.mapTo(viewer, QPoint(a.width(), 0)).x() <= b.mapTo(viewer, QPoint(0, 0)).x()  # side by side
    assert a.shown_size() == (a.shown_size()[1],) * 2 and b.shown_size()[0] / b.shown_size()[1] == pytest.approx(2 / 3, abs=0.01)
    assert viewer.ab_button.isVisible()
    viewer.ab_button.click()  # A alone
    assert a.isVisible() and not b.isVisible()
    viewer.ab_button.click()  # B alone
    assert b.isVisible() and not a.isVisible()
    viewer.ab_button.click()  # side by side again
    assert a.isVisible() and b.isVisible()


@pytest.mark.slow
def test_generate_shows_progress_on_the_tile_then_the_result_in_the_viewer(qapp: Any, qtbot: Any,
                                                                          standin: Any) -> None:
    comfy = standin("comfyui")
    made = assemble(load_settings(cli={"urls": [comfy.url], "scan_default_ports": False, "api_port": 0}))
    window, shell, console = made.window, made.shell, made.window.console
    qtbot.addWidget(window)
    window.resize(1440, 900)
    seen: list[str] = []

    async def scenario() -> None:
        window.show()
        await shell.start()
        await until(lambda: any(c.state == "up" for c in window.dashboard.cards.values()), 30)
        assert any("ComfyUI" in b.text() for b in window.strip.items.values())
        form = console.form
        form.set_task("text_to_image")
        form.prompt.setPlainText("a lighthouse at dusk")
        form.fields["workflow"].set_value("standin_progress")  # a slow workflow: its progress can be watched
        await until(lambda: "seconds" in form.fields)
        form.fields["seconds"].set_value(3)
        await until(lambda: form.generate.isEnabled())
        qtbot.mouseClick(form.generate, Qt.MouseButton.LeftButton)
        await until(lambda: console.gallery.count() == 1)
        tile = console.gallery.item(0)

        def progress_shown() -> bool:
            seen.append(tile.text())
            return bool(re.search(r"#\d+ · \d+%", tile.text()))

        await until(progress_shown, 30)
        assert console.viewer.job_id == console.gallery.job_ids()[0]  # the viewer follows the running job
        assert "running" in window.strip.queue.text().split(",")[0] and window.strip.queue.text().startswith("1")
        await until(lambda: tile.text().endswith("✓"), 60)
        await until(lambda: console.viewer.kind == "image" and console.viewer.info.text().endswith(".png"), 20)
        assert re.match(r"#\d+ succeeded in \d+\.\d s$", form.status_label.text())  # the status beside Generate followed the job
        assert window.strip.queue.text() == "0 running, 0 queued"
        window.close()
        await shell.stop()

    try:
        run(qapp, scenario())
    finally:
        made.close()
    assert console.viewer.shown_size()[1] >= 600, seen


def test_a_finished_video_plays_and_seeks_in_the_viewer(qapp: Any, parts: Parts, tmp_path: Path) -> None:
    from tests.test_media import shown_frame, write_clip

    window, console = parts.window, parts.window.console
    window.resize(1440, 900)
    window.show()
    # Wan2GP names its files after the prompt: a long name must not squeeze the form
    clip = write_clip(tmp_path / ("2026-12-07-00h55m42s_seed901169611_" + "Waves-break-on-the-rocks-" * 4 + ".mp4"),
                      frames=24, fps=24)
    now = time.time()
    job = Job(id="vid1", task="text_to_video", prompt="waves", seq=3, state=JobState.SUCCEEDED,
              routed_to="wan2gp@127.0.0.1:8000", started_at=now - 5, finished_at=now,
              outputs=[OutputFile(clip, "video/mp4", clip.stat().st_size)])

    async def scenario() -> None:
        console._on_job(job)
        await until(lambda: console.viewer.kind == "video" and console.viewer.player is not None)
        player = console.viewer.player
        await until(lambda: player.frame_count == 24)
        player.play()
        await until(lambda: player.position >= 6)  # it plays
        player.seek(17)
        await until(lambda: shown_frame(player) == 17)  # and seeks to the exact frame
        player.step(-1)
        await until(lambda: shown_frame(player) == 16)
        assert not player.playing  # a step pauses

    run(qapp, scenario())
    assert console.viewer.player.picture_rect().height() >= 500  # played large, not in a thumbnail
    assert console.form_scroll.width() >= 300, console.form_scroll.width()


def test_send_to_blender_is_off_without_an_addon_and_sends_to_a_connected_one(qapp: Any, parts: Parts,
                                                                              tmp_path: Path) -> None:
    """The viewer's Send to Blender: disabled (saying why) with no addon; with one connected it sends the shown file."""
    from backlot.blender_addon.client import ApiClient, Notification
    from backlot.services.api.token import read_token
    from backlot.services.application.views import NO_BLENDER

    window, shell, viewer = parts.window, parts.shell, parts.window.console.viewer
    button = viewer.blender_button
    got: list[Any] = []

    async def scenario() -> None:
        await shell.start()
        center = shell.center
        assert center.api is not None
        job = finished_image_job(tmp_path, 1)
        job.id = "0123456789ab"
        png = center.settings.output_path / job.id / "out_1.png"  # in the outputs, as a job's result is
        png.parent.mkdir(parents=True)
        png.write_bytes(job.outputs[0].path.read_bytes())
        job.outputs = (OutputFile(png.resolve(), "image/png", png.stat().st_size),)
        await center.store.insert(job)
        window.console._on_job(job)
        await until(lambda: viewer.kind == "image")
        assert not button.isEnabled() and button.toolTip() == NO_BLENDER
        token = read_token(center.settings.paths.token_file)
        addon = ApiClient("127.0.0.1", center.api.port, token=token, client_name="blender",
                          topics=["blender.place"], reconnect=False)
        await asyncio.to_thread(addon.connect, 10)
        try:
            await until(button.isEnabled, 10)  # the window follows the API's sessions
            assert "1 addon connected" in button.toolTip()
            QTest.mouseClick(button, Qt.MouseButton.LeftButton)
            await until(lambda: viewer.blender_note.text() == "Sent to Blender (1 addon)", 10)
            while not got:
                msg = await asyncio.to_thread(addon.next_message, 10)
                assert msg is not None, "the addon got nothing"
                if isinstance(msg, Notification):
                    got.append(msg)
        finally:
            addon.close()
        await until(lambda: not button.isEnabled(), 10)  # the addon left
        window.close()
        await shell.stop()

    run(qapp, scenario())
    (msg,) = got
    assert msg.method == "blender.place"
    assert (msg.params["job_id"], msg.params["seq"], msg.params["mime"]) == ("0123456789ab", 1, "image/png")
    assert msg.params["path"].endswith("0123456789ab/out_1.png")


# ----- the Queue page -----
def queued_job(seq: int, state: JobState = JobState.QUEUED, **extra: Any) -> Job:
    """A job snapshot in some state (no files)."""
    now = time.time()
    started = now - 3 if state is not JobState.QUEUED else None
    finished = now if state.terminal else None
    return Job(id=f"job{seq}", task="text_to_image", prompt=f"shot {seq}", seq=seq, state=state,
               params={"seed": 100 + seq}, started_at=started, finished_at=finished, **extra)


def click_row(table: Any, job_id: str, ctrl: bool = False) -> None:
    row = table.view_row(job_id)
    rect = table.visualRect(table.order.index(row, 0))
    modifier = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def test_the_queue_shows_running_then_queued_then_finished_and_sorts_by_a_clicked_header(
        qapp: Any, parts: Parts, qtbot: Any) -> None:
    window, console = parts.window, parts.window.console
    window.resize(1440, 900)
    window.show()
    window.show_page(1)
    table = console.table
    for job in (queued_job(1, JobState.SUCCEEDED), queued_job(2), queued_job(3, JobState.RUNNING), queued_job(4),
                queued_job(5, JobState.FAILED)):
        console._on_job(job)
    assert table.shown_ids() == ["job3", "job4", "job2", "job5", "job1"]  # running, queued, finished; newest first
    click_row(table, "job4")
    console._on_job(queued_job(4, JobState.RUNNING))  # job 4 starts: it moves up, and stays selected
    assert table.shown_ids() == ["job4", "job3", "job2", "job5", "job1"]
    assert [j.id for j in table.selected_jobs()] == ["job4"] and console.details.job_id == "job4"
    header = table.horizontalHeader()

    def click_header(column: int) -> None:
        x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
        QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(x, header.height() // 2))

    click_header(0)  # "#"
    numbers = [j[3:] for j in table.shown_ids()]
    assert numbers in (["1", "2", "3", "4", "5"], ["5", "4", "3", "2", "1"])
    click_header(0)  # the other way round
    assert [j[3:] for j in table.shown_ids()] == list(reversed(numbers))
    assert [j.id for j in table.selected_jobs()] == ["job4"]  # the selection followed its job
    console._on_job(queued_job(2, JobState.RUNNING))  # an update keeps the column's order
    assert [j[3:] for j in table.shown_ids()] == list(reversed(numbers))


def test_two_queued_jobs_selected_are_both_cancelled(qapp: Any, parts: Parts, qtbot: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    window, console = parts.window, parts.window.console
    app = parts.shell.console.app  # type: ignore[union-attr]
    window.resize(1440, 900)
    window.show()
    window.show_page(1)
    table = console.table
    cancelled: list[str] = []
    retried: list[tuple[str, Any]] = []

    async def cancel(ref: str | int) -> Job:
        cancelled.append(str(ref))
        job = queued_job(int(str(ref)[3:]), JobState.CANCELLED)
        console._on_job(job)  # as the bus would tell the window
        return job

    async def retry(ref: str | int, *, client: str = "", params: Any = None) -> Job:
        retried.append((str(ref), params))
        job = queued_job(10 + len(retried))
        return job

    monkeypatch.setattr(app, "cancel", cancel)
    monkeypatch.setattr(app, "retry", retry)
    for job in (queued_job(1, JobState.FAILED), queued_job(2), queued_job(3, JobState.RUNNING), queued_job(4)):
        console._on_job(job)
    assert not console.cancel_button.isEnabled() and not console.retry_button.isEnabled()

    async def scenario() -> None:
        click_row(table, "job2")
        click_row(table, "job4", ctrl=True)
        assert {j.id for j in table.selected_jobs()} == {"job2", "job4"}
        assert console.cancel_button.text() == "Cancel 2" and not console.retry_button.isEnabled()
        console.cancel_button.click()
        await until(lambda: len(cancelled) == 2)
        await until(lambda: not console.cancel_button.isEnabled())  # both ended: nothing left to cancel
        assert console.retry_button.text() == "Retry 2"  # and both can be retried
        click_row(table, "job3")
        table.setFocus()
        QTest.keyClick(table, Qt.Key.Key_Delete)  # Del cancels the selection too
        await until(lambda: len(cancelled) == 3)
        click_row(table, "job1")
        click_row(table, "job2", ctrl=True)
        console.retry_button.click()
        await until(lambda: len(retried) == 2)

    run(qapp, scenario())
    assert sorted(cancelled[:2]) == ["job2", "job4"] and cancelled[2] == "job3"
    assert sorted(r[0] for r in retried) == ["job1", "job2"] and all(r[1] is None for r in retried)


def test_the_details_show_the_error_sentence_and_the_raw_detail_one_click_away(parts: Parts) -> None:
    console = parts.window.console
    parts.window.show()
    parts.window.show_page(1)
    failed = queued_job(7, JobState.FAILED, error=JobFailure("invalid", "ComfyUI refused the workflow: node 5 is missing.",
                                                             {"node_errors": {"5": "missing"}}))
    console._on_job(failed)
    console.table.select_job("job7")
    details = console.details
    assert details.error.isVisible() and details.error.text() == "✕ ComfyUI refused the workflow: node 5 is missing."
    assert "node_errors" not in details.text.toPlainText()  # the raw detail is folded away
    assert details.raw_button.isVisible() and not details.raw.isVisible()
    details.raw_button.click()
    assert details.raw.isVisible() and '"node_errors"' in details.raw.toPlainText()
    console._on_job(queued_job(8))
    console.table.select_job("job8")
    assert not details.error.isVisible() and not details.raw_button.isVisible() and not details.raw.isVisible()


# ----- the viewer's actions -----
def test_retry_with_new_seed_runs_a_job_whose_seed_differs(qapp: Any, parts: Parts, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    window, console = parts.window, parts.window.console
    app = parts.shell.console.app  # type: ignore[union-attr]
    window.resize(1440, 900)
    window.show()
    old = finished_image_job(tmp_path, 14)
    old.params = {"seed": 8812, "steps": 20}
    old.requested_backend = "comfyui"
    submitted: list[Job] = []

    async def job(ref: str | int) -> Job:
        assert str(ref) == old.id
        return old

    async def submit(task: str, prompt: str, params: dict[str, Any], inputs: list[str], backend: str, *,
                     client: str = "") -> Job:  # the job manager accepting the new job
        new = Job(id="job15", task=task, prompt=prompt, seq=15, params=params, inputs=inputs,
                  requested_backend=backend, client=client)
        submitted.append(new)
        return new

    monkeypatch.setattr(app, "job", job)
    monkeypatch.setattr(app.jobs, "submit", submit)

    async def scenario() -> None:
        console._on_job(old)
        await until(lambda: console.viewer.kind == "image")
        assert console.viewer.new_seed_button.isEnabled()
        console.viewer.new_seed_button.click()
        await until(lambda: bool(submitted) and console.table.view_row("job15") is not None)

    run(qapp, scenario())
    (new,) = submitted
    assert new.params["seed"] != old.params["seed"] and new.params["seed"] == -1  # the backend picks a new one
    assert {k: v for k, v in new.params.items() if k != "seed"} == {"steps": 20}
    assert (new.task, new.prompt, new.requested_backend, new.client) == (old.task, old.prompt, "comfyui", "window")
    assert console.table.selected_job() is not None and console.table.selected_job().id == "job15"  # selected


def test_left_and_right_in_the_viewer_step_through_the_outputs_but_not_past_a_focused_video(
        qapp: Any, parts: Parts, tmp_path: Path) -> None:
    from tests.test_media import write_clip

    window, console = parts.window, parts.window.console
    viewer = console.viewer
    window.resize(1440, 900)
    window.show()
    clip = write_clip(tmp_path / "clip.mp4", frames=12, fps=12)
    now = time.time()
    video = Job(id="vid4", task="text_to_video", prompt="waves", seq=4, state=JobState.SUCCEEDED,
                started_at=now - 5, finished_at=now, outputs=[OutputFile(clip, "video/mp4", clip.stat().st_size)])
    shown: list[str | None] = []

    async def scenario() -> None:
        for seq in (1, 2, 3):
            console._on_job(finished_image_job(tmp_path, seq))
        assert console.gallery.job_ids() == ["job3", "job2", "job1"]
        click_tile(parts, "job3")  # the newest, first in the gallery
        await until(lambda: viewer.job_id == "job3" and viewer.kind == "image")
        for key, target in ((Qt.Key.Key_Right, "job2"), (Qt.Key.Key_Right, "job1"), (Qt.Key.Key_Right, "job1"),
                            (Qt.Key.Key_Left, "job2")):
            QTest.keyClick(viewer.pane, key)  # the picture passes ←/→ on (a fitted image has nothing to scroll)
            shown.append(viewer.job_id)
            assert viewer.job_id == target and console.gallery.current == target, shown
        QTest.keyClick(viewer, Qt.Key.Key_Left)  # the viewer itself
        assert viewer.job_id == "job3"
        console._on_job(video)
        console.show_job("vid4")
        await until(lambda: viewer.player is not None and viewer.player.frame_count == 12)
        player = viewer.player
        QTest.keyClick(player, Qt.Key.Key_Right)  # a video player with the focus steps a frame
        await until(lambda: player.position == 1)
        assert viewer.job_id == "vid4"
        QTest.keyClick(viewer, Qt.Key.Key_Right)  # the viewer steps to the next output
        assert viewer.job_id == "job3"

    run(qapp, scenario())
