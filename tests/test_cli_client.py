"""The CLI is a client of the one running instance: concurrent submits run once each; Ctrl-C detaches; cancel stops."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def env_for(home: Path, url: str) -> dict[str, str]:
    return {**os.environ, "BACKLOT_HOME": str(home), "BACKLOT_URLS": url, "BACKLOT_SCAN_DEFAULT_PORTS": "false",
            "BACKLOT_API_PORT": "0", "PYTHONUNBUFFERED": "1"}


def backlot(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


async def comfy_history(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "/history") as r:
        return dict(await r.json())


@pytest.mark.parametrize(("count", "instance_first"), [(2, False), (10, False), (10, True)])
def test_concurrent_submits_each_run_exactly_once(standin: Any, backlot_home: Path, count: int,
                                                  instance_first: bool) -> None:
    import asyncio

    sp = standin("comfyui", speed=10)
    env = env_for(backlot_home, sp.url)
    if instance_first:
        assert backlot(env, "submit", "--task", "text_to_image", "--prompt", "warm-up", "--param",
                       "workflow=standin_image", "--wait").returncode == 0
    args = [("submit", "--task", "text_to_image", "--prompt", f"shot {i}", "--param", "workflow=standin_image",
             "--wait", "--json") for i in range(count)]
    with ThreadPoolExecutor(count) as pool:
        done = list(pool.map(lambda a: backlot(env, *a), args))
    assert all(d.returncode == 0 for d in done), [d.stderr[-500:] for d in done]
    jobs = [json.loads(d.stdout.splitlines()[-1]) for d in done]
    assert all(j["state"] == "succeeded" and len(j["attempt_log"]) == 1 for j in jobs)
    started = [d for d in done if "started Backlot in the background" in d.stderr]
    assert len(started) == (0 if instance_first else 1)  # one instance for the home, however many asked
    history = asyncio.run(comfy_history(sp.url))
    refs = [j["remote_ref"] for j in jobs]
    assert len(set(refs)) == count and all(r in history for r in refs)
    assert len(history) == count + (1 if instance_first else 0)  # one prompt per job on the backend
    for j in jobs:  # the stored outputs are the job's own files
        (out,) = j["outputs"]
        assert Path(out["path"]).stat().st_size == out["bytes"] and j["id"] in out["path"]
    listed = json.loads(backlot(env, "jobs", "--json").stdout)
    assert sorted(j["id"] for j in listed if j["prompt"].startswith("shot")) == sorted(j["id"] for j in jobs)


def test_ctrl_c_on_wait_detaches_and_cancel_stops_the_job_on_the_backend(standin: Any, backlot_home: Path) -> None:
    import asyncio

    sp = standin("comfyui", speed=1)
    env = env_for(backlot_home, sp.url)
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "submit", "--task", "text_to_image", "--prompt",
                             "long take", "--param", "workflow=standin_progress", "--param", "seconds=120", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "job #1 <id>: text_to_image queued"
    seq = first.split()[1].lstrip("#")
    while "step" not in (line := proc.stdout.readline()):  # progress from the backend: it is running there
        assert line, "the submit ended before the job ran"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"job #{seq} keeps running; `backlot cancel {seq}` stops it" in err
    shown = json.loads(backlot(env, "show", seq, "--json").stdout)
    assert shown["state"] == "running"
    cancelled = backlot(env, "cancel", seq)
    assert cancelled.returncode == 0, cancelled.stderr
    final = json.loads(backlot(env, "show", seq, "--json").stdout)
    for _ in range(100):
        if final["state"] != "running":
            break
        final = json.loads(backlot(env, "show", seq, "--json").stdout)
    assert final["state"] == "cancelled", final["status"]
    history = asyncio.run(comfy_history(sp.url))
    assert "execution_interrupted" in json.dumps(history[final["remote_ref"]]["status"])


def test_status_show_retry_and_stop_against_a_running_instance(standin: Any, backlot_home: Path) -> None:
    sp = standin("comfyui", speed=10)
    env = env_for(backlot_home, sp.url)
    first = backlot(env, "submit", "--task", "text_to_image", "--prompt", "harbour", "--param",
                    "workflow=standin_image", "--wait")
    assert first.returncode == 0 and "started Backlot in the background" in first.stderr
    status = json.loads(backlot(env, "status", "--json").stdout)
    assert {"pid", "api_host", "api_port", "token_file", "services", "jobs"} <= set(status)
    token = Path(status["token_file"]).read_text().strip()
    assert token not in json.dumps(status) and status["jobs"] == {"succeeded": 1}
    assert [s["id"] for s in status["services"]] == [f"comfyui@127.0.0.1:{sp.port}"]
    shown = backlot(env, "show", "1")
    assert "attempt 1:" in shown.stdout and "output:" in shown.stdout
    retried = backlot(env, "retry", "1")
    assert retried.returncode == 0 and "job #2" in retried.stdout
    stopped = backlot(env, "stop")
    assert stopped.returncode == 0 and f"stopped Backlot (pid {status['pid']})" in stopped.stdout
    assert backlot(env, "status").returncode == 4
    listed = json.loads(backlot(env, "jobs", "--json").stdout)  # read-only from the store now
    assert {j["seq"] for j in listed} == {1, 2}


def test_a_text_job_prints_its_reply_and_retry_waits_like_submit(standin: Any, backlot_home: Path) -> None:
    sp = standin("llm", speed=20)
    env = env_for(backlot_home, sp.url)
    try:
        done = backlot(env, "submit", "--task", "text", "--prompt", "Describe the opening shot.", "--param",
                       "max_tokens=40", "--wait")
        assert done.returncode == 0, done.stderr
        shown = json.loads(backlot(env, "show", "1", "--json").stdout)
        (out,) = shown["outputs"]
        reply = Path(out["path"]).read_text(encoding="utf-8")
        assert reply.strip() and done.stdout.rstrip("\n").endswith(reply.rstrip("\n"))
        again = backlot(env, "retry", "1", "--wait", "--json")
        assert again.returncode == 0, again.stderr
        final = json.loads(again.stdout.strip().splitlines()[-1])
        assert (final["seq"], final["state"], final["prompt"]) == (2, "succeeded", "Describe the opening shot.")
        assert final["text"].strip() and final["text"] == Path(final["outputs"][0]["path"]).read_text(encoding="utf-8")
    finally:
        backlot(env, "stop")


def test_status_shows_the_state_the_window_shows(standin: Any, backlot_home: Path) -> None:
    """A Wan2GP web UI without its API answers its health checks, yet Backlot cannot drive it: degraded in both."""
    from backlot.services.models import ServiceRecord, ServiceState

    sp = standin("wan2gp-webui")
    env = env_for(backlot_home, sp.url)
    try:
        assert backlot(env, "submit", "--task", "text_to_video", "--prompt", "a pier").returncode == 3  # starts it
        status = json.loads(backlot(env, "status", "--json").stdout)
        (service,) = status["services"]
        assert service["usable"] is False and service["state"] == "degraded", service
        record = ServiceRecord(service["kind"], service["host"], service["port"], service["url"], service["protocol"],
                               usable=service["usable"], present=service["present"])
        assert record.shown_state(ServiceState.UP) == "degraded"  # what the window's card shows for it
        assert "degraded" in backlot(env, "status").stdout
    finally:
        backlot(env, "stop")
