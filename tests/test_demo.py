"""`backlot demo --headless`: every stand-in up, URLs recorded for the home, all gone on SIGTERM or SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from backlot.services.config import load_settings
from backlot.standins.launcher import KINDS

ROOT = Path(__file__).resolve().parent.parent
PROBES = {"comfyui": "/system_stats", "wan2gp": None, "wan2gp-webui": "/config", "rvc": "/config",
          "audioldm": "/config", "llm": "/v1/models"}


def start_demo(home: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {**os.environ, "BACKLOT_HOME": str(home), "PYTHONUNBUFFERED": "1", "BACKLOT_API_PORT": "0"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "demo", "--headless", "--speed", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(home))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until every stand-in listens (or the demo dies: empty line)
    if not line:
        proc.wait(10)
        pytest.fail(f"demo exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)["standins"]


def standin_processes(demo: subprocess.Popen[str]) -> list[psutil.Process]:
    return psutil.Process(demo.pid).children(recursive=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_runs_every_standin_and_stops_them_all_on_sigterm(backlot_home: Path) -> None:
    proc, urls = start_demo(backlot_home)
    try:
        assert set(urls) == set(KINDS)
        for kind, path in PROBES.items():
            if path:
                with urllib.request.urlopen(urls[kind] + path, timeout=10) as r:
                    assert r.status == 200
        assert load_settings(home=backlot_home).standins == urls
        env = {**os.environ, "BACKLOT_HOME": str(backlot_home)}
        found = subprocess.run([sys.executable, str(ROOT / "main.py"), "discover", "--json"], env=env,
                               capture_output=True, text=True, timeout=60)
        report = json.loads(found.stdout)
        kinds = {(s["kind"], s["protocol"]) for s in report["services"] if s["found_by"] == "demo stand-in"}
        assert kinds >= {("comfyui", "comfyui"), ("wan2gp", "mcp"), ("wan2gp", "gradio-6"), ("rvc", "gradio-3"),
                         ("audioldm", "gradio-3"), ("llm", "openai")}
        assert report["duration_ms"] < 1000
        children = standin_processes(proc)
        assert len(children) >= len(KINDS)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == []
    assert load_settings(home=backlot_home).standins == {}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_demo_leaves_no_orphans(backlot_home: Path) -> None:
    proc, urls = start_demo(backlot_home)
    children = standin_processes(proc)
    proc.kill()
    proc.wait(30)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [p.cmdline() for p in alive]
