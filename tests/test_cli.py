"""The command line's contract before later issues fill it in."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from main import main
from backlot.services import __version__

ROOT = Path(__file__).resolve().parent.parent


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"backlot {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("discover", "status", "submit", "demo", "--headless", "--screenshot", "--home"):
        assert word in out


def test_commands_that_need_the_instance_say_it_is_not_running(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status"], ["cancel", "1"], ["retry", "1"], ["stop"]):
        assert main(argv) == 4, argv
        err = capsys.readouterr().err
        assert "Backlot is not running for this home" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [[], ["demo"]])
def test_window_without_display_says_so_in_one_line(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no display" in err and "--headless" in err


def test_console_script_matches_main_py(backlot_home: Path) -> None:
    exe = Path(sys.executable).with_name("backlot")
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home)}
    a = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env, timeout=60)
    b = subprocess.run([sys.executable, str(ROOT / "main.py"), "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout == f"backlot {__version__}\n"


def test_bad_speed_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--headless", "--speed", "0"]) == 2
    assert "--speed" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "usage"), [
    (["retry", "1", "--bogus"], "usage: backlot retry"),
    (["submit", "--task", "text", "--prompt", "hi", "--nope"], "usage: backlot submit"),
    (["workflows", "list", "--nope"], "usage: backlot workflows list"),
])
def test_a_command_argument_error_shows_that_commands_usage(argv: list[str], usage: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith(usage) and f"error: unrecognized arguments: {argv[-1]}" in err


def test_retry_takes_wait_and_json() -> None:
    from backlot.cli.main import build_parser

    args = build_parser().parse_args(["retry", "3", "--wait", "--json"])
    assert (args.job, args.wait, args.json) == ("3", True, True)
    assert build_parser().parse_args(["cancel", "3", "--json"]).json


def test_submit_needs_no_prompt_option_for_a_task_that_reads_none() -> None:
    from backlot.cli.main import build_parser

    args = build_parser().parse_args(["submit", "--task", "voice_conversion", "--input", "line.wav"])
    assert (args.task, args.prompt, args.input) == ("voice_conversion", "", ["line.wav"])
