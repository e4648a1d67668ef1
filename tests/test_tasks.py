"""Bad input is refused before anything is queued: the task schema, `backlot tasks`, the CLI and JobManager.submit."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import wave
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import main
from backlot.services.backends.comfyui.workflows import TEMPLATES_DIR
from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.jobs.manager import JobError
from backlot.services.jobs.store import JobStore
from backlot.services.jobs.validate import InvalidJob, check_params, job_schema, validate_job
from backlot.services.models import JobState
from backlot.services.tasks import SCHEMA, TASKS


def unreadable(tmp_path: Path) -> Path:
    """A regular file this process cannot read (root reads any file mode, but not its own /proc/self/mem at 0)."""
    if os.geteuid() == 0:
        return Path("/proc/self/mem")
    path = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(path)
    path.chmod(0)
    return path


def files(tmp_path: Path) -> dict[str, Path]:
    """A text file, a folder, a PNG and a WAV to hand to jobs."""
    notes = tmp_path / "notes.txt"
    notes.write_text("INT. HARBOUR - NIGHT\nThe keeper lights the lamp.\n")
    folder = tmp_path / "shots"
    folder.mkdir()
    png = tmp_path / "frame.png"
    Image.new("RGB", (16, 16), (200, 40, 40)).save(png)
    wav = tmp_path / "line.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x10" * 16000)
    not_a_flow, ui_flow = tmp_path / "settings.json", tmp_path / "saved_from_the_ui.json"
    not_a_flow.write_text('{"a": 1}')
    ui_flow.write_text('{"nodes": [], "links": [], "version": 0.4}')
    return {"notes": notes, "folder": folder, "png": png, "wav": wav, "locked": unreadable(tmp_path),
            "not_a_flow": not_a_flow, "ui_flow": ui_flow}


# (task, params, input names, what the one sentence says)
BAD: list[tuple[str, dict[str, str], list[str], str]] = [
    ("text_to_image", {"bogus_key": "1"}, [], "text_to_image has no parameter 'bogus_key'"),
    ("text_to_image", {"steps": "abc"}, [], "steps must be a whole number, got 'abc'"),
    ("text_to_image", {"width": "-5"}, [], "width must be at least 16, got -5"),
    ("text_to_image", {"width": "1.5"}, [], "width must be a whole number, got '1.5'"),
    ("upscale", {}, [], "upscale needs an input image"),
    ("upscale", {}, ["folder"], "is a folder, not a file"),
    ("upscale", {}, ["locked"], "cannot be read"),
    ("upscale", {}, ["missing"], "does not exist"),
    ("upscale", {}, ["notes"], "notes.txt is not an image file"),
    ("voice_conversion", {}, ["notes"], "notes.txt is not an audio file"),
    ("voice_conversion", {}, ["png"], "frame.png is not an audio file"),
    ("text_to_image", {"workflow": "no_such_flow"}, [], "no workflow template named 'no_such_flow'"),
    ("text_to_image", {"workflow": "standin_image", "color": "red"}, [], "color must be a whole number"),
    ("text_to_image", {}, ["png"], "text_to_image takes no input file"),
    ("text_to_image", {"workflow": "@not_a_flow"}, [], "settings.json is not a ComfyUI workflow"),
    ("text_to_image", {"workflow": "@ui_flow"}, [], "saved_from_the_ui.json: this workflow has no nodes Backlot can run"),
    ("text_to_image", {"workflow": "@missing"}, [], "cannot be read"),
]


def named(params: dict[str, str], made: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    """BAD's params with "@name" turned into the path of that made file."""
    return {k: str(made.get(v[1:], tmp_path / f"{v[1:]}.json")) if v.startswith("@") else v for k, v in params.items()}


def paths(names: list[str], made: dict[str, Path], tmp_path: Path) -> list[str]:
    return [str(made.get(n, tmp_path / f"{n}.png")) for n in names]


async def stored_jobs() -> list[Any]:
    store = JobStore(load_settings().data_path / "jobs.sqlite3")
    await store.open()
    try:
        return await store.query(limit=100)
    finally:
        await store.close()


def test_params_are_coerced_by_the_schema_in_one_place() -> None:
    settings = load_settings(cli={"scan_default_ports": False})
    params, _ = check_params(settings, "text", {"max_tokens": "40", "temperature": "0.5", "stream": "false",
                                                "seed": "7", "model": "123", "system": None})
    assert params == {"max_tokens": 40, "temperature": 0.5, "stream": False, "seed": 7, "model": "123"}
    params, _ = check_params(settings, "text_to_video", {"width": 320.0, "guidance_scale": "4", "settings": '{"a": 1}',
                                                         "complexity": "high", "height": " ", "negative": ""})
    assert params == {"width": 320, "guidance_scale": 4.0, "settings": {"a": 1}, "complexity": "high",
                      "negative": ""}  # a blank number is unset (a form's empty field) and dropped; blank text is text
    for bad, sentence in (({"stream": "maybe"}, "stream must be true or false"),
                          ({"temperature": "3"}, "temperature must be at most 2, got 3"),
                          ({"max_tokens": True}, "max_tokens must be a whole number"),
                          ({"temperature": "nan"}, "temperature must be a finite number")):
        with pytest.raises(InvalidJob, match=sentence):
            check_params(settings, "text", bad)
    with pytest.raises(InvalidJob, match="complexity must be one of normal, high"):
        check_params(settings, "text_to_video", {"complexity": "hi"})
    with pytest.raises(InvalidJob, match="unknown task 'paint'"):
        check_params(settings, "paint", {})


def test_a_workflows_bindings_add_its_params_and_its_image() -> None:
    settings = load_settings(cli={"scan_default_ports": False})
    with pytest.raises(InvalidJob, match="has no parameter 'seconds'"):
        check_params(settings, "text_to_image", {"seconds": "3"})
    params, spec = check_params(settings, "text_to_image", {"workflow": "standin_progress", "seconds": "3"})
    assert params == {"workflow": "standin_progress", "seconds": 3.0}
    seconds = spec.param("seconds")
    assert seconds is not None and seconds.type == "float" and seconds.default == 2.0 and "StandinSleep" in seconds.help
    # the upscale template takes an image and says it needs one: a text_to_image job naming it must bring one
    spec = job_schema(settings, "text_to_image", {"workflow": "upscale"})
    assert [(i.media, i.required) for i in spec.inputs] == [("image", True)]
    assert spec.param("upscaler") is not None and spec.param("input_image") is None and spec.param("prompt") is None
    # the bindings come from the kinds serving the task: without ComfyUI there is no workflow to add anything
    wan_only = load_settings(cli={"scan_default_ports": False, "task_backends": {"text_to_video": ["wan2gp"]}})
    with pytest.raises(InvalidJob, match="has no parameter 'color'"):
        check_params(wan_only, "text_to_video", {"workflow": "standin_image", "color": "5"})
    assert check_params(settings, "text_to_video", {"workflow": "standin_image", "color": "5"})[0]["color"] == 5


async def test_media_is_sniffed_not_guessed_from_the_name(tmp_path: Path) -> None:
    settings = load_settings(cli={"scan_default_ports": False})
    made = files(tmp_path)
    disguised = tmp_path / "take2.wav"
    disguised.write_bytes(made["notes"].read_bytes())
    with pytest.raises(InvalidJob, match="^take2.wav is not an audio file$"):
        await validate_job(settings, "voice_conversion", {}, [disguised])
    assert (await validate_job(settings, "voice_conversion", {"pitch": "-3"}, [made["wav"]])).params == {"pitch": -3}
    assert (await validate_job(settings, "image_to_video", {}, [made["png"]])).inputs == [made["png"]]


async def test_a_task_that_needs_a_prompt_refuses_a_blank_one_and_one_that_reads_none_needs_none(
        tmp_path: Path) -> None:
    settings = load_settings(cli={"scan_default_ports": False})
    made = files(tmp_path)
    for task, blank in (("text_to_image", ""), ("text_to_image", "  \n"), ("sound_effects", ""), ("text", " ")):
        with pytest.raises(InvalidJob, match=f"^{task} needs a prompt \\(what to make\\), and the prompt is empty$"):
            await validate_job(settings, task, {}, [], blank)
    assert (await validate_job(settings, "voice_conversion", {}, [made["wav"]], "")).inputs == [made["wav"]]
    assert (await validate_job(settings, "image_to_video", {}, [made["png"]], "")).inputs == [made["png"]]
    # a workflow that reads no prompt is run without one, whatever its task
    assert (await validate_job(settings, "text_to_image", {"workflow": "standin_image"}, [], "")).params
    prompt_use = {name: spec.to_dict()["prompt"] for name, spec in SCHEMA.items()}
    assert prompt_use["voice_conversion"] == prompt_use["upscale"] == "none"
    assert prompt_use["image_to_video"] == "optional" and prompt_use["text_to_image"] == "needed"


def test_backlot_tasks_json_is_the_schema_with_its_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["tasks", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    tasks = {t["name"]: t for t in json.loads(out)["tasks"]}
    assert tuple(tasks) == TASKS
    settings = load_settings()
    for name, task in tasks.items():
        assert task["description"] and task["backends"] == settings.task_backends[name]
        assert task == {**SCHEMA[name].to_dict(), "backends": settings.task_backends[name]}
        for p in task["params"]:
            assert set(p) >= {"name", "type", "help", "default", "min", "max"}
            assert p["type"] in ("int", "float", "str", "bool", "choice", "object")
    assert tasks["voice_conversion"]["inputs"] == [{"name": "audio", "media": "audio", "required": True,
                                                    "help": "the recorded line"}]
    assert tasks["voice_conversion"]["backends"] == ["rvc"]
    width = next(p for p in tasks["text_to_image"]["params"] if p["name"] == "width")
    assert (width["type"], width["min"], width["max"]) == ("int", 16, 16384)
    assert main.main(["tasks"]) == 0
    table = capsys.readouterr().out
    assert "voice_conversion: A recorded line re-spoken in another voice." in table
    assert "inputs: audio (audio)" in table and "backends: rvc" in table
    assert any(line.split()[:3] == ["pitch", "int", "-24..24"] for line in table.splitlines())


def test_the_cli_refuses_bad_input_with_exit_2_and_no_job_row(standin: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    sp = standin("comfyui", speed=10)
    monkeypatch.setenv("BACKLOT_URLS", sp.url)
    monkeypatch.setenv("BACKLOT_SCAN_DEFAULT_PORTS", "false")
    made = files(tmp_path)
    for task, params, inputs, sentence in BAD:
        argv = ["submit", "--task", task, "--prompt", "the lighthouse"]
        argv += [a for k, v in named(params, made, tmp_path).items() for a in ("--param", f"{k}={v}")]
        argv += [a for f in paths(inputs, made, tmp_path) for a in ("--input", f)]
        assert main.main(argv) == 2, (task, params, inputs)
        captured = capsys.readouterr()
        err = captured.err.strip()
        lines = err.splitlines()  # a UI-format workflow is checked by the instance, which is started for it
        if len(lines) == 2 and lines[0].startswith("backlot: started Backlot in the background"):
            lines = lines[1:]
        assert sentence in err and len(lines) == 1 and "Traceback" not in err, (sentence, err)
        assert captured.out == ""
        assert asyncio.run(stored_jobs()) == [], sentence
    assert main.main(["submit", "--task", "text_to_image", "--prompt", "p", "--param", "workflow=standin_image",
                      "--param", "width=64", "--param", "height=48", "--wait", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["state"] == "succeeded" and done["params"] == {"workflow": "standin_image", "width": 64, "height": 48}
    (row,) = asyncio.run(stored_jobs())
    assert row.state is JobState.SUCCEEDED and row.params["width"] == 64
    shots = tmp_path / "shots"  # a workflow file named relative to where the user is (the instance runs elsewhere)
    for suffix in (".json", ".bindings.json"):
        shutil.copy(TEMPLATES_DIR / f"standin_image{suffix}", shots / f"solid{suffix}")
    monkeypatch.chdir(shots)
    assert main.main(["submit", "--task", "text_to_image", "--prompt", "p", "--param", "workflow=solid.json",
                      "--param", "width=64", "--param", "height=48", "--wait", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["state"] == "succeeded" and Path(done["params"]["workflow"]).name.startswith("solid-")  # the accepted snapshot


async def test_submit_refuses_bad_input_and_writes_nothing(standin: Any, tmp_path: Path) -> None:
    comfy, rvc = standin("comfyui", speed=10), standin("rvc", speed=10)
    center = ControlCenter(load_settings(cli={"urls": [comfy.url, rvc.url], "scan_default_ports": False,
                                              "discovery_budget": 2.0}))
    await center.start()
    made = files(tmp_path)
    try:
        for task, params, inputs, sentence in BAD:
            with pytest.raises(JobError) as err:
                await center.jobs.submit(task, "the lighthouse", named(params, made, tmp_path),
                                         paths(inputs, made, tmp_path))
            assert err.value.code == "invalid" and sentence in str(err.value), (sentence, str(err.value))
        assert await center.jobs.list() == [] and await center.store.query() == []
        outputs = center.settings.output_path
        assert not outputs.exists() or list(outputs.iterdir()) == []
        job = await center.jobs.submit("text_to_image", "p", {"workflow": "standin_image", "width": "64",
                                                              "height": 48.0})
        assert job.params == {"workflow": "standin_image", "width": 64, "height": 48}
        done = await center.jobs.wait(job.id, 30)
        assert done.state is JobState.SUCCEEDED, done.status
    finally:
        await center.stop()
