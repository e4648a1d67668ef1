"""Job console widgets fed with data under qtbot (offscreen): the table, the form, the dialog and the API panel."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from typing import Any  # noqa: E402

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from backlot.services.models import Job, JobState  # noqa: E402
from backlot.services.tasks import SCHEMA  # noqa: E402
from backlot.widgets.api_panel import ApiPanel  # noqa: E402
from backlot.widgets.job_form import JobForm  # noqa: E402
from backlot.widgets.job_table import FRACTION_ROLE, PROGRESS, JobTable  # noqa: E402
from backlot.widgets.settings_dialog import SettingsDialog  # noqa: E402


def snapshot(fraction: float | None, state: str = "running", **extra: Any) -> Job:
    """A job as the core publishes it, read from its wire form."""
    code = "progress" if state == "running" else state
    return Job.from_dict({"id": "j1", "seq": 7, "task": "text_to_image", "prompt": "a lighthouse", "state": state,
                          "status": {"code": code, "fraction": fraction, "message": ""}, "requested_backend": "auto",
                          "routed_to": "comfyui@127.0.0.1:8188", "started_at": 100.0, "finished_at": None,
                          "attempt_log": [{"n": 1, "backend": "comfyui@127.0.0.1:8188", "started_at": 100.0}],
                          "outputs": [], **extra})


def bar_fill(table: JobTable) -> int:
    """Pixels across the progress cell painted in the bar's (blue) fill colour, along its middle line."""
    rect = table.visualRect(table.order.mapFromSource(table.jobs.index(0, PROGRESS)))  # the view shows the proxy
    image = table.viewport().grab(rect).toImage()
    y = image.height() // 2
    return sum(1 for x in range(image.width()) if _bluish(image.pixelColor(x, y)))


def _bluish(c: QColor) -> bool:
    return c.blue() > c.red() + 60


def test_a_jobs_progress_moves_its_bar_in_place(qtbot: Any) -> None:
    table = JobTable()
    table.jobs.clock = lambda: 141.0
    qtbot.addWidget(table)
    table.resize(900, 200)
    table.show()
    qtbot.waitExposed(table)
    table.jobs._on_job(snapshot(0.1))
    low = bar_fill(table)
    with qtbot.waitSignal(table.jobs.dataChanged):
        table.jobs._on_job(snapshot(0.62))
    assert table.jobs.rowCount() == 1  # updated in place, not appended
    index = table.jobs.index(0, PROGRESS)
    assert index.data(FRACTION_ROLE) == 0.62 and index.data().strip() == "62%"
    high = bar_fill(table)
    assert high > low * 3 > 0, (low, high)
    assert table.jobs.index(0, 5).data() == "0:41"  # duration from started_at to the clock
    table.jobs._on_job(snapshot(1.0, "succeeded", finished_at=150.0))
    assert table.jobs.index(0, 4).data() == "● done" and table.jobs.index(0, 5).data() == "0:50"


def test_newer_jobs_are_listed_first_and_state_reads_in_words(qtbot: Any) -> None:
    table = JobTable()
    qtbot.addWidget(table)
    table.jobs._on_job(snapshot(None, "queued", id="a", seq=1))
    table.jobs._on_job(snapshot(None, "failed", id="b", seq=3, error={"message": "node 5 (KSampler): x"}))
    table.jobs._on_job(snapshot(0.3, id="c", seq=2, cancel_requested=True))
    assert [table.jobs.index(r, 0).data() for r in range(3)] == ["3", "2", "1"]
    assert [table.jobs.index(r, 4).data() for r in range(3)] == ["○ failed", "◐ cancelling", "◌ queued"]
    assert table.jobs.index(0, 4).data(Qt.ItemDataRole.ToolTipRole) == "node 5 (KSampler): x"


def test_del_and_the_context_menu_ask_to_cancel_the_selected_job(qtbot: Any) -> None:
    table = JobTable()
    qtbot.addWidget(table)
    table.jobs._on_job(snapshot(0.2))
    table.show()
    qtbot.waitExposed(table)
    table.select_job("j1")
    table.setFocus()
    with qtbot.waitSignal(table.cancel_requested) as got:
        qtbot.keyClick(table, Qt.Key.Key_Delete)
    assert got.args == ["j1"]
    menu = table.context_menu_for(table.jobs.job(0))
    actions = {a.text(): a for a in menu.actions() if a.text()}
    assert actions["Cancel"].isEnabled() and not actions["Retry"].isEnabled()
    with qtbot.waitSignal(table.cancel_requested) as got:
        actions["Cancel"].trigger()
    assert got.args == ["j1"]
    actions["Copy prompt"].trigger()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == "a lighthouse"
    actions["Show details…"].trigger()
    dialog = table.details["j1"]
    assert not dialog.isModal() and "Route:" in dialog.text.toPlainText()
    table.jobs._on_job(snapshot(None, "failed", error={"message": "it broke", "code": "runtime", "detail": {"n": 5}}))
    assert "Error: it broke (runtime)" in dialog.text.toPlainText() and '"n": 5' in dialog.text.toPlainText()


def test_an_invalid_value_blocks_submit_with_its_reason(qtbot: Any) -> None:
    form = JobForm(list(SCHEMA.values()))
    qtbot.addWidget(form)
    form.show()
    qtbot.waitExposed(form)
    form.set_task("text_to_video")
    form.prompt.setPlainText("a lighthouse at dusk")
    assert form.generate.isEnabled()
    settings = form.fields["settings"].widget
    settings.setText("{not json")
    reason = 'settings must be a JSON object like {"key": 1}, got \'{not json\''
    assert not form.generate.isEnabled()
    assert form.problem_label.text() == f"Cannot generate: {reason}"
    assert settings.property("invalid") is True and settings.toolTip() == reason
    with qtbot.assertNotEmitted(form.submitted):
        form.submit()
    settings.setText('{"flow_shift": 3}')
    form.fields["steps"].widget.setValue(30)
    assert form.generate.isEnabled() and form.problem_label.text() == ""
    form.windowHandle().requestActivate()  # shortcuts work in the active window
    qtbot.waitUntil(form.isActiveWindow)
    form.prompt.setFocus()
    with qtbot.waitSignal(form.submitted) as got:
        qtbot.keyClick(form.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Enter
    assert got.args == ["text_to_video", "a lighthouse at dusk", {"settings": {"flow_shift": 3}, "steps": 30}, [], "auto"]


def test_a_missing_or_wrong_input_file_is_a_reason_too(qtbot: Any) -> None:
    form = JobForm(list(SCHEMA.values()))
    qtbot.addWidget(form)
    form.set_task("image_to_video")
    assert form.problems() == ["choose the image file: the start frame"] and not form.generate.isEnabled()
    (spec, edit), = form.input_edits
    edit.setText("/takes/line.wav")
    assert form.problems() == ["line.wav is an audio file, not an image file (the start frame)"]
    edit.setText("/takes/frame.png")
    assert form.problems() == [] and form.inputs() == ["/takes/frame.png"]


def test_the_pin_list_follows_the_task(qtbot: Any) -> None:
    form = JobForm(list(SCHEMA.values()), {"text_to_image": ["comfyui"], "voice_conversion": ["rvc"]})
    qtbot.addWidget(form)
    form._on_services([{"id": "comfyui@a:8188", "kind": "comfyui"}, {"id": "rvc@a:7865", "kind": "rvc", "usable": False}])
    form.set_task("text_to_image")
    assert [form.backend_combo.itemData(i) for i in range(form.backend_combo.count())] == ["auto", "comfyui@a:8188"]
    with qtbot.waitSignal(form.changed) as got:
        form.set_backend("comfyui@a:8188")
    assert got.args[2] == "comfyui@a:8188"
    with qtbot.waitSignal(form.changed) as got:
        form.set_task("voice_conversion")  # the pin cannot serve it: back to auto
    assert got.args[0] == "voice_conversion" and form.backend == "auto"
    assert form.backend_combo.itemText(1) == "rvc@a:7865 (not usable)"
    form._on_route_explained("no backend that can run voice_conversion is available (wanted: rvc)", False)
    assert form.route_label.text().startswith("✕ no backend can run this now: no backend that can run")


def test_settings_dialog_emits_only_changes_and_refuses_bad_ports(qtbot: Any) -> None:
    values = {"hosts": ["gpu-box"], "urls": [], "ports": {"comfyui": [8288]}, "api_host": "127.0.0.1",
              "api_port": 8770, "output_dir": "", "discovery_interval": 300.0}
    dialog = SettingsDialog(values, ["comfyui", "rvc"], {"openai": "○ no key"})
    qtbot.addWidget(dialog)
    save = dialog.buttons.buttons()[0]
    dialog.ports["rvc"].setText("5050, 99999")
    assert not save.isEnabled() and "99999" in dialog.problem.text()
    dialog.ports["rvc"].setText("5050")
    dialog.seconds["discovery_interval"].setValue(120)
    dialog.keys["openai"].setText("sk-secret")
    assert dialog.keys["openai"].echoMode() == dialog.keys["openai"].EchoMode.Password
    with qtbot.waitSignal(dialog.save_requested) as got:
        dialog.save()
    assert got.args == [{"ports": {"rvc": [5050]}, "discovery_interval": 120.0, "llm_keys": {"openai": "sk-secret"}}]
    with qtbot.waitSignal(dialog.check_key_requested) as got:
        dialog.findChild(type(save), "check-openai").click()
    assert got.args == ["openai", "sk-secret"] and dialog.key_status["openai"].text() == "checking…"


def test_api_panel_shows_address_and_clients(qtbot: Any) -> None:
    panel = ApiPanel()
    qtbot.addWidget(panel)
    assert not panel.copy_button.isEnabled() and "starting" in panel.state.text()  # until the core says
    panel._on_status("", 0, 0, False)
    assert not panel.copy_button.isEnabled() and "not serving" in panel.state.text()
    panel._on_status("127.0.0.1", 8770, 2, True)
    assert panel.address.text() == "127.0.0.1:8770" and panel.clients.text() == "· 2 clients"
    with qtbot.waitSignal(panel.copy_token_requested):
        panel.copy_button.click()


def test_preview_picks_the_output_worth_showing(qtbot: Any, tmp_path: Any) -> None:
    from backlot.widgets.preview import PreviewPanel

    panel = PreviewPanel()
    qtbot.addWidget(panel)
    assert not panel.open_button.isEnabled() and not panel.retry_button.isEnabled()  # no job selected yet
    text_job = snapshot(1.0, "succeeded", task="text", outputs=[{"path": str(tmp_path / "reply.txt"), "mime": "text/plain"}])
    with qtbot.waitSignal(panel.load_requested) as got:
        panel._on_job(text_job)
    assert got.args == ["j1", str(tmp_path / "reply.txt"), "text"]
    assert panel.open_button.isEnabled() and panel.retry_button.isEnabled()
    panel._on_text("j1", "INT. LIGHTHOUSE - NIGHT")
    assert panel.kind == "text" and panel.text.toPlainText() == "INT. LIGHTHOUSE - NIGHT"
    with qtbot.assertNotEmitted(panel.load_requested):
        panel._on_job(text_job)  # the same job again (a progress tick): nothing reloads
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    panel._on_job(snapshot(1.0, "succeeded", id="j2", outputs=[
        {"path": str(tmp_path / "frame.png"), "mime": "image/png"}, {"path": str(video), "mime": "video/mp4"}]))
    assert panel.kind == "video" and panel.player is not None and panel.play_button.isVisibleTo(panel)
    assert panel.player.source().toLocalFile() == str(video)
    panel._on_job(snapshot(None, "failed", id="j3", error={"message": "ComfyUI rejected node 5 (KSampler)"}))
    assert panel.kind is None and panel.message.text() == "No result: ComfyUI rejected node 5 (KSampler)."
    assert panel.player.source().isEmpty()  # playback of the previous job stopped


def test_the_status_beside_generate_follows_the_job_sent_last(qtbot: Any) -> None:
    from backlot.services.models import JobFailure

    form = JobForm(list(SCHEMA.values()))
    qtbot.addWidget(form)
    queued = Job(id="j4", task="text_to_image", prompt="p", seq=4)
    form._on_submitted(queued)
    assert form.status_label.text() == "#4 queued"
    form._on_job(snapshot(0.4, id="j9", seq=9))  # another job (the CLI's, say) does not take the status over
    assert form.status_label.text() == "#4 queued"
    form._on_job(snapshot(0.4, id="j4", seq=4))
    assert form.status_label.text() == "#4 running 40%"
    form._on_job(Job(id="j4", task="text_to_image", prompt="p", seq=4, state=JobState.SUCCEEDED, started_at=100.0,
                     finished_at=112.34))
    assert form.status_label.text() == "#4 succeeded in 12.3 s"
    form._on_submitted(Job(id="j5", task="text_to_image", prompt="p", seq=5))
    form._on_job(Job(id="j5", task="text_to_image", prompt="p", seq=5, state=JobState.FAILED,
                     error=JobFailure("backend_error", "ComfyUI ran out of GPU memory\nraw detail")))
    assert form.status_label.text() == "#5 failed: ComfyUI ran out of GPU memory"
    assert "GPU memory" in form.status_label.toolTip()
