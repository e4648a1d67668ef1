"""The launcher from the command line, against a real ``backlot --headless`` whose config.toml has launch entries.

``comfy`` is the ComfyUI stand-in (started on demand), ``broken`` a command that prints two lines and exits 3,
``ticker`` prints a numbered line every 0.1 s and never answers on its port (so it stays "starting").
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import tomlkit
from test_cli_thin import _thin

from backlot.cli import remote
from backlot.standins import demo

ROOT = Path(__file__).resolve().parent.parent
NOT_RUNNING = "backlot: Backlot is not running for this home; start it with `backlot --headless` (or `backlot`)"
TICKER = "import itertools, time\nfor i in itertools.count():\n    print(f'tick {i}', flush=True)\n    time.sleep(0.1)"
BROKEN = "import sys\nprint('loading models')\nprint('CUDA out of memory', file=sys.stderr)\nsys.exit(3)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "BACKLOT_HOME": str(home), "BACKLOT_SCAN_DEFAULT_PORTS": "false", "BACKLOT_API_PORT": "0",
            "PYTHONUNBUFFERED": "1"}


def backlot(home: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], capture_output=True, text=True,
                          env=_env(home), timeout=timeout)


def _write_config(home: Path, tmp_path: Path) -> dict[str, dict[str, Any]]:
    specs, _ = demo.launch_specs(tmp_path / "standins", speed=10, kinds=("comfyui",))
    entries = {"comfy": {**specs["demo-comfyui"], "start": "on-demand"},
               "broken": {"kind": "comfyui", "command": [sys.executable, "-c", BROKEN], "port": _free_port(),
                          "restart": "never"},
               "ticker": {"kind": "comfyui", "command": [sys.executable, "-c", TICKER], "port": _free_port(),
                          "restart": "never", "ready_timeout": 600}}
    doc = tomlkit.document()
    doc.add(tomlkit.comment("the film's backends"))
    launch = tomlkit.table(is_super_table=True)
    for name, entry in entries.items():
        launch[name] = entry
    doc["launch"] = launch
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    return entries


@pytest.fixture
def instance(backlot_home: Path, tmp_path: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """``backlot --headless`` on the launch entries, serving; stopped (with what it launched) afterwards."""
    entries = _write_config(backlot_home, tmp_path)
    log = tmp_path / "backlot.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--headless"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=_env(backlot_home), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while remote.find(remote.Home(str(backlot_home))) is None:  # it writes instance.json once it serves
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield entries
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _entries(home: Path) -> dict[str, dict[str, Any]]:
    status = backlot(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    return {e["name"]: e for e in json.loads(status.stdout)["launch"]}


def test_start_logs_stop_and_status_against_a_running_instance(instance: dict[str, dict[str, Any]],
                                                               backlot_home: Path) -> None:
    port = instance["comfy"]["port"]
    listed = backlot(backlot_home, "status")
    assert listed.returncode == 0 and "comfy   ○ stopped" in listed.stdout, listed.stdout
    said, started = _thin(_env(backlot_home), "start", "comfy")  # waits on the instance's news, core not loaded
    assert said == {"code": 0, "heavy": []}, started.stderr
    shown = _entries(backlot_home)["comfy"]
    assert shown["state"] == "running" and shown["pid"]
    assert started.stdout == f"comfy: ● running on port {port} (pid {shown['pid']})\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # it answers where the line says
    status = backlot(backlot_home, "status").stdout
    assert f"comfy   ● running  {port}" in status and "broken  ○ stopped" in status, status
    # the console: the last N lines, the same as the end of all of them; without loading the core here
    said, every = _thin(_env(backlot_home), "logs", "comfy", "-n", "1000")
    assert said == {"code": 0, "heavy": []}, every.stderr
    assert f"[backlot] ready on http://127.0.0.1:{port}" in every.stdout
    last_two = backlot(backlot_home, "logs", "comfy", "-n", "2")
    assert last_two.returncode == 0 and last_two.stdout.splitlines() == every.stdout.splitlines()[-2:]
    # a start that fails says why, with the entry's last console lines, and exits 1
    failed = backlot(backlot_home, "start", "broken")
    assert failed.returncode == 1 and failed.stdout == f"broken: ○ failed on port {instance['broken']['port']}\n"
    assert "backlot: broken failed: exited (code 3); its restart policy is never; last lines:" in failed.stderr
    assert "CUDA out of memory" in failed.stderr and "Traceback" not in failed.stderr
    # unknown names: the instance's sentence, exit 2, nothing started
    for argv in (["start", "comfy", "nope"], ["stop", "nope"], ["restart", "nope"], ["logs", "nope"]):
        refused = backlot(backlot_home, *argv)
        assert refused.returncode == 2, (argv, refused.stderr)
        assert refused.stderr.strip() == "backlot: no launch entry named 'nope'; the entries are broken, comfy, ticker"
    wrong = backlot(backlot_home, "restart", "comfy", "--mcp")
    assert (wrong.returncode, wrong.stderr.strip()) == (
        2, "backlot: comfy is a comfyui entry; only Wan2GP has an MCP server to restart with")
    # stop NAME stops that entry only; Backlot keeps running
    said, stopped = _thin(_env(backlot_home), "stop", "comfy")
    assert said == {"code": 0, "heavy": []} and stopped.stdout.startswith("comfy: ○ stopped"), stopped.stderr
    assert not psutil.pid_exists(shown["pid"]) or psutil.Process(shown["pid"]).status() == psutil.STATUS_ZOMBIE
    after = _entries(backlot_home)
    assert (after["comfy"]["state"], after["broken"]["state"]) == ("stopped", "failed")
    # restart waits like start; plain `stop` then stops Backlot and what it launched
    again = backlot(backlot_home, "restart", "comfy")
    assert again.returncode == 0 and again.stdout.startswith("comfy: ● running"), again.stderr
    pid = _entries(backlot_home)["comfy"]["pid"]
    inst = remote.find(remote.Home(str(backlot_home)))
    assert inst is not None
    done = backlot(backlot_home, "stop")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"stopped Backlot (pid {inst.pid})\nstopped what it launched: comfy\n"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for argv in (["start", "comfy"], ["logs", "comfy"], ["status"]):
        gone = backlot(backlot_home, *argv)
        assert (gone.returncode, gone.stderr.strip()) == (4, NOT_RUNNING), argv


def test_logs_follow_prints_new_lines_until_ctrl_c(instance: dict[str, dict[str, Any]], backlot_home: Path) -> None:
    spawned = backlot(backlot_home, "start", "ticker", "--no-wait")
    port = instance["ticker"]["port"]
    assert spawned.returncode == 0 and spawned.stdout.startswith(f"ticker: ◔ starting on port {port} (pid "), (
        spawned.stdout, spawned.stderr)
    follow = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "logs", "ticker", "-f", "-n", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(backlot_home))
    assert follow.stdout is not None
    try:
        ticks = []
        while len(ticks) < 5:  # lines printed after the command started: it follows the console
            line = follow.stdout.readline()
            assert line, "logs -f ended by itself"
            if line.startswith("tick "):
                ticks.append(int(line.split()[1]))
        assert ticks == list(range(ticks[0], ticks[0] + 5))  # each new line once, in order
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0 and "Traceback" not in err, err
    stopped = backlot(backlot_home, "stop", "ticker")
    assert stopped.returncode == 0 and stopped.stdout.startswith("ticker: ○ stopped"), stopped.stderr


def test_every_launch_command_says_when_backlot_is_not_running(backlot_home: Path) -> None:
    for argv in (["start", "comfy"], ["start", "comfy", "--no-wait"], ["restart", "comfy"], ["stop", "comfy"],
                 ["stop"], ["logs", "comfy", "-f"]):
        said, done = _thin(_env(backlot_home), *argv)
        assert said == {"code": 4, "heavy": []}, (argv, done.stderr)
        assert done.stderr.strip().splitlines()[0] == NOT_RUNNING


def _fake_comfyui(tmp_path: Path) -> Path:
    folder = tmp_path / "ComfyUI"
    (folder / "comfy").mkdir(parents=True)
    (folder / "main.py").write_text("print('not really ComfyUI')\n")
    return folder


def test_add_backend_writes_the_entry_and_keeps_the_config_as_it_was(backlot_home: Path, tmp_path: Path) -> None:
    config = backlot_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# my hosts, do not lose this\nhosts = [\"render-box\"]  # the big GPU\n")
    folder = _fake_comfyui(tmp_path)
    added = backlot(backlot_home, "add-backend", str(folder))
    assert added.returncode == 0, added.stderr
    text = config.read_text()
    assert text.startswith("# my hosts, do not lose this\nhosts = [\"render-box\"]  # the big GPU\n")
    entry = tomllib.loads(text)["launch"]["comfyui"]
    port = entry["port"]
    assert entry["kind"] == "comfyui" and entry["cwd"] == str(folder) and entry["start"] == "on-demand"
    assert entry["command"][1:5] == ["main.py", "--listen", "127.0.0.1", "--port"] and entry["command"][5] == str(port)
    assert added.stdout.startswith(f"added [launch.comfyui] to {config}:\n"
                                   f"  comfyui on port {port}, started on demand\n")
    assert "note: " in added.stdout and "`backlot start comfyui` starts it once Backlot runs" in added.stdout
    # a second one gets its own name and port; --with-backlot starts it with Backlot
    second = backlot(backlot_home, "add-backend", str(folder), "--with-backlot")
    assert second.returncode == 0, second.stderr
    both = tomllib.loads(config.read_text())["launch"]
    assert both["comfyui-2"]["start"] == "with-backlot" and both["comfyui-2"]["port"] != port
    from backlot.services.config import load_settings

    settings = load_settings(home=str(backlot_home))
    assert set(settings.launch) == {"comfyui", "comfyui-2"}  # Backlot reads what was written
    # bad input: one sentence each, exit 2, config.toml untouched
    before = config.read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, sentence in (
            ([str(empty)], f"{empty} is not a ComfyUI, Wan2GP, RVC or AudioLDM checkout"),
            ([str(tmp_path / "missing")], f"{tmp_path / 'missing'} is not a folder"),
            ([str(folder), "--name", "comfyui"], f"a launch entry named 'comfyui' is already in {config}"),
            ([str(folder), "--name", "no spaces"], "'no spaces' is not a usable name"),
            ([str(folder), "--kind", "blender"], "unknown kind 'blender'; choose one of comfyui, wan2gp")):
        refused = backlot(backlot_home, "add-backend", *argv)
        assert refused.returncode == 2 and refused.stderr.startswith(f"backlot: {sentence}"), (argv, refused.stderr)
    assert config.read_text() == before


def test_add_backend_asks_the_running_instance_which_knows_the_entry_at_once(instance: dict[str, dict[str, Any]],
                                                                              backlot_home: Path, tmp_path: Path) -> None:
    config = backlot_home / "config" / "config.toml"
    added = backlot(backlot_home, "add-backend", str(_fake_comfyui(tmp_path)), "--name", "studio")
    assert added.returncode == 0, added.stderr
    text = config.read_text()
    assert text.startswith("# the film's backends\n") and tomllib.loads(text)["launch"]["studio"]["kind"] == "comfyui"
    inst = remote.find(remote.Home(str(backlot_home)))
    assert inst is not None
    assert f"Backlot (pid {inst.pid}) knows it: `backlot start studio` starts it" in added.stdout
    listed = backlot(backlot_home, "status", "--json")
    assert "studio" in {e["name"] for e in json.loads(listed.stdout)["launch"]}
    refused = backlot(backlot_home, "add-backend", str(tmp_path))  # the instance's refusal, the same sentence
    assert refused.returncode == 2 and "is not a ComfyUI, Wan2GP, RVC or AudioLDM checkout" in refused.stderr


def test_restart_with_mcp_keeps_the_mcp_command_in_config_toml(backlot_home: Path) -> None:
    """What ``backlot restart NAME --mcp`` saves once the instance runs it so (the next Backlot starts it so)."""
    import io

    from backlot.cli import launch_config

    config = backlot_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# Wan2GP as I start it by hand\n[launch.wan]\nkind = \"wan2gp\"\n"
                      "command = [\"python\", \"wgp.py\", \"--listen\", \"--server-port\", \"7860\"]\nport = 7860\n")
    out = io.StringIO()
    launch_config.keep_mcp(remote.Home(str(backlot_home)), ["wan"], out)
    text = config.read_text()
    assert text.startswith("# Wan2GP as I start it by hand\n")
    assert tomllib.loads(text)["launch"]["wan"]["command"] == [
        "python", "wgp.py", "--mcp", "--mcp-transport", "streamable-http", "--mcp-host", "127.0.0.1", "--mcp-port",
        "7860"]
    assert out.getvalue() == f"saved in {config}: wan starts with the MCP server from now on\n"
    again = io.StringIO()
    launch_config.keep_mcp(remote.Home(str(backlot_home)), ["wan"], again)
    assert again.getvalue() == "" and config.read_text() == text  # already so: nothing written
