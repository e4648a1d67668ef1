"""Edges a new user met: unwritable homes, a shared .env, a second demo, flags after the command, Ctrl-C, --json."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import main
from backlot.cli import main as cli_main
from backlot.services.config import ConfigError, Settings, load_settings
from backlot.services.instance import InstanceLock
from backlot.services.jobs.store import JobStore
from backlot.services.models import Job, JobState

ROOT = Path(__file__).resolve().parent.parent


def blocked_home(tmp_path: Path) -> Path:
    """A home whose parent is a file: no folder can be made there, even as root."""
    wall = tmp_path / "wall"
    wall.write_text("a file where a folder was expected")
    return wall / "home"


@pytest.mark.parametrize("argv", [["jobs"], ["submit", "--task", "text", "--prompt", "hi"], ["--headless"],
                                  ["demo", "--headless"], ["jobs", "--json"]])
def test_an_unusable_home_is_one_sentence_and_exit_2(argv: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    home = blocked_home(tmp_path)
    assert main.main(["--home", str(home), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("backlot") and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(tmp_path / "wall") in err and "Not a directory" in err, err


def test_home_and_log_level_work_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = blocked_home(tmp_path)
    assert main.main(["jobs", "--home", str(home), "--log-level", "ERROR"]) == 2
    assert str(tmp_path / "wall") in capsys.readouterr().err


def test_a_shared_dotenv_with_other_keys_is_fine(backlot_home: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-not-ours\nDATABASE_URL=postgres://x\nBACKLOT_HEALTH_INTERVAL=12\n")
    s = load_settings(cwd=tmp_path)
    assert s.health_interval == 12


def test_unknown_keys_inside_tables_list_the_valid_ones(backlot_home: Path, tmp_path: Path) -> None:
    cfg = backlot_home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('[task_backends]\ntext_to_imag = ["comfyui"]\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cwd=tmp_path)
    text = str(err.value)
    assert "config.toml" in text and "'task_backends.text_to_imag'" in text and "'text_to_image'" in text
    cfg.write_text('[task_backends]\ntext_to_image = ["comfyui", "forge"]\n')
    with pytest.raises(ConfigError, match="forge"):
        load_settings(cwd=tmp_path)


def test_a_second_demo_refuses_and_leaves_the_running_ones_files(backlot_home: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()
    record = settings.paths.standins_file
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text('[standins]\n"comfyui" = "http://127.0.0.1:1"\n')
    lock = InstanceLock(settings.data_path)
    lock.acquire()
    try:
        assert main.main(["demo", "--headless"]) == 2
    finally:
        lock.release()
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert record.read_text().startswith("[standins]")


def test_default_logging_keeps_library_chatter_out(backlot_home: Path) -> None:
    for level, expect in (("INFO", logging.WARNING), ("DEBUG", logging.NOTSET)):
        for name in cli_main.CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        cli_main._setup_logging(Settings.model_construct(**{**load_settings().__dict__, "log_level": level}))
        assert {logging.getLogger(n).level for n in cli_main.CHATTY_LOGGERS} == {expect}


def test_a_multi_line_message_is_one_line_in_the_jobs_table(backlot_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    async def put() -> None:
        store = JobStore(load_settings().data_path / "jobs.sqlite3")
        await store.open()
        job = Job(id="ml1", task="text", prompt="p", state=JobState.FAILED)
        job.status = replace(job.status, message="Traceback (most recent call last):\n  File x\nValueError: no")
        await store.insert(job)
        await store.close()

    asyncio.run(put())
    assert main.main(["jobs"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "ml1" in ln]
    assert len(lines) == 1 and "Traceback (most recent call last): File x" in lines[0]


def _cli(home: Path, url: str) -> dict[str, str]:
    return {**os.environ, "BACKLOT_HOME": str(home), "BACKLOT_URLS": url, "BACKLOT_SCAN_DEFAULT_PORTS": "false",
            "PYTHONUNBUFFERED": "1"}


def test_json_stdout_holds_only_the_job_even_at_debug(standin: Any, backlot_home: Path) -> None:
    sp = standin("comfyui", speed=10)
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--log-level", "DEBUG", "submit", "--task",
                           "text_to_image", "--prompt", "p", "--param", "workflow=standin_image", "--wait", "--json"],
                          capture_output=True, text=True, env=_cli(backlot_home, sp.url), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["state"] == "succeeded", done.stdout[-2000:]
    assert "DEBUG" in done.stderr


def test_ctrl_c_is_one_quiet_line_and_exit_130(standin: Any, backlot_home: Path) -> None:
    sp = standin("comfyui", speed=1)
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "submit", "--task", "text_to_image", "--prompt",
                             "p", "--param", "workflow=standin_progress", "--param", "seconds=60", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli(backlot_home, sp.url))
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "job #1 …: text_to_image queued": it is running now
    assert "queued" in first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last in ("backlot: interrupted",
                                               "backlot: job #1 keeps running; `backlot cancel 1` stops it"), err
