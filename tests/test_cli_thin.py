"""The thin client: with an instance running, the job commands load no part of the core (pydantic, aiohttp, Qt),
nor the standard library's slower modules that they do not need."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backlot.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("aiohttp", "pydantic", "pydantic_settings", "PySide6", "platformdirs", "litellm", "av", "PIL",
         # the standard library's: each would add milliseconds to a command that takes a few dozen
         "asyncio", "logging", "subprocess", "dataclasses", "shutil", "random", "ssl", "email", "http", "uuid")
PROBE = """
import json, sys
sys.argv[0] = "backlot"
import main
code = main.main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))
print(json.dumps({"code": code, "heavy": loaded}), file=sys.stderr)
"""


def _thin(env: dict[str, str], *argv: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE % json.dumps(HEAVY), *argv], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)
    return json.loads(done.stderr.strip().splitlines()[-1]), done


def test_job_commands_load_only_the_stdlib_and_the_client(standin: Any, backlot_home: Path, tmp_path: Path) -> None:
    sp = standin("comfyui", speed=10)
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "BACKLOT_URLS": sp.url,
           "BACKLOT_SCAN_DEFAULT_PORTS": "false", "BACKLOT_API_PORT": "0"}
    said, _ = _thin(env, "status")
    assert said == {"code": 4, "heavy": []}  # not running: found out without the core
    first = subprocess.run([sys.executable, str(ROOT / "main.py"), "submit", "--task", "text_to_image", "--prompt",
                            "", "--param", "workflow=standin_image"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert first.returncode == 0, first.stderr  # started the instance
    try:
        flow = tmp_path / "flow.json"  # a workflow file named by its path
        flow.write_text((ROOT / "resources" / "workflows" / "standin_image.json").read_text())
        said, done = _thin({**env, "PWD": str(tmp_path)}, "submit", "--task", "text_to_image", "--prompt", "",
                           "--param", f"workflow={flow}", "--wait", "--json")
        assert said == {"code": 0, "heavy": []}, done.stderr
        job = json.loads(done.stdout.splitlines()[-1])
        assert job["state"] == "succeeded" and Path(job["params"]["workflow"]).name.startswith("flow-")  # its snapshot
        for argv in (["status"], ["jobs"], ["show", str(job["seq"])], ["retry", str(job["seq"])]):
            said, done = _thin(env, *argv)
            assert said == {"code": 0, "heavy": []}, (argv, done.stderr)
        said, done = _thin(env, "--log-level", "DEBUG", "status")  # asked for: the client's own lines, as ever
        assert said == {"code": 0, "heavy": ["logging"]} and " DEBUG   backlot.cli.remote: Backlot pid " in done.stderr
        # the instance checks the job: its refusal keeps the sentence and exit 2, still without the core here
        said, done = _thin(env, "submit", "--task", "text_to_image", "--prompt", "p", "--param", "width=wide")
        assert said == {"code": 2, "heavy": []} and "width must be a whole number" in done.stderr
        said, done = _thin(env, "submit", "--task", "text_to_image", "--prompt", "p", "--param", "steps")
        assert said == {"code": 2, "heavy": []} and "--param 'steps' is not KEY=VALUE" in done.stderr
    finally:
        subprocess.run([sys.executable, str(ROOT / "main.py"), "stop"], env=env, capture_output=True, timeout=60)


def test_the_clients_config_folder_is_the_instances(monkeypatch: Any, tmp_path: Path) -> None:
    """The stdlib client (CLI, Blender addon) finds the same config folder the instance uses (platformdirs)."""
    from backlot.blender_addon.client import config_dir
    from backlot.services.paths import Paths

    monkeypatch.delenv("BACKLOT_HOME", raising=False)
    for xdg in ("", str(tmp_path / "xdg")):
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
        assert config_dir() == Paths.resolve(None).config_dir
    monkeypatch.setenv("BACKLOT_HOME", str(tmp_path / "home"))
    assert config_dir() == Paths.resolve(str(tmp_path / "home")).config_dir
    assert config_dir(str(tmp_path / "other")) == Paths.resolve(str(tmp_path / "other")).config_dir


# Lines the parser `main` uses (the named command's alone) must read exactly as the whole parser reads them.
LINES = [[], ["--help"], ["-h"], ["--version"], ["bogus"], ["--", "status"], ["-x", "status"], ["--h", "status"],
         ["--ho", "status", "jobs"], ["--home", "status", "jobs"], ["--home=h", "jobs", "--state", "failed"],
         ["--api-port", "x", "status"], ["--api-port", "-5", "status"], ["--log-level", "bad", "status"],
         ["--log", "DEBUG", "show", "3"], ["--screenshot", "status"], ["--headless", "--install-desktop-entry", "stop"],
         ["--home", "a", "status", "--home", "b", "--json"], ["status", "--version"], ["status", "jobs"], ["show"],
         ["submit"], ["submit", "--help"], ["submit", "--task", "t", "--param", "a=b", "--param", "c", "--wait"],
         ["submit", "--task", "t", "--bogus"], ["jobs", "--limit", "x"], ["retry", "3", "--wait", "--json"],
         ["cancel", "1", "2"], ["workflows"], ["workflows", "--home", "h", "show", "x"], ["workflows", "import", "-h"],
         ["demo", "--headless", "--speed", "2"], ["discover", "--url", "a", "--url", "b"], ["addon", "--output", "x"]]


def _parsed(parse: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, ...]:
    try:
        return vars(parse(list(argv))), None, capsys.readouterr()
    except SystemExit as done:
        return None, done.code, capsys.readouterr()


@pytest.mark.parametrize("argv", LINES)
def test_the_named_commands_parser_alone_parses_as_the_whole_one(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The same namespace, or the same help or error on the same stream with the same exit code."""
    monkeypatch.setenv("COLUMNS", "100")
    assert _parsed(cli_main.parse_args, argv, capsys) == _parsed(cli_main.build_parser().parse_args, argv, capsys)


def test_the_command_is_the_first_word_past_the_top_level_options() -> None:
    named = cli_main.command_named
    assert named(["submit", "--help"]) == "submit"
    assert named(["--home", "status", "--log-level", "INFO", "jobs"]) == "jobs"
    assert named(["--home=h", "--headless", "--api-port", "1", "show", "3"]) == "show"
    for unclear in ([], ["--help", "jobs"], ["-h", "jobs"], ["--ho", "h", "jobs"], ["--", "jobs"], ["bogus"],
                    ["--home"]):
        assert named(unclear) is None, unclear  # the whole parser decides


def test_the_scan_knows_which_top_level_options_take_a_value() -> None:
    """A top-level option added to the parser goes into one of the scan's lists (else every line builds all parsers)."""
    actions = [a for a in cli_main._top_level()._actions if "--help" not in a.option_strings]
    assert {s for a in actions for s in a.option_strings if a.nargs != 0} == set(cli_main._TAKE_A_VALUE)
    assert {s for a in actions for s in a.option_strings if a.nargs == 0} == set(cli_main._FLAGS)


@pytest.mark.parametrize("columns", [None, "", "0", "-3", "wide", "57", "200"])
def test_help_is_as_wide_as_argparse_makes_it(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli_main._columns() == shutil.get_terminal_size().columns
