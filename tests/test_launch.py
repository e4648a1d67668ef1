"""The launcher with real processes: stand-ins started through launch entries, killed, crashing, blocked, adopted."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import HealthChanged, JobUpdated
from backlot.services.launch import presets
from backlot.services.launch.console import REDACTED, Console
from backlot.services.launch.process import free_port, port_in_use
from backlot.services.models import JobState, ServiceState
from backlot.standins import demo
from tests.apiclient import running_api
from tests.helpers import EventWaiter

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def comfy_entry(tmp: Path, **over: Any) -> dict[str, Any]:
    """A launch entry (settings form) that runs the ComfyUI stand-in on a free port, started on demand."""
    spec = demo.launch_specs(tmp / "standins", 4.0, ("comfyui",))[0]["demo-comfyui"]
    return {**spec, "demo": False, "start": "on-demand", **over}


def settings_with(entries: dict[str, dict[str, Any]], **extra: Any) -> Any:
    return load_settings(cli={"launch": entries, "scan_default_ports": False, "discovery_budget": 1.0,
                              "health_interval": 0.3, "health_timeout": 1.0, "api_port": 0, **extra})


@asynccontextmanager
async def center_with(entries: dict[str, dict[str, Any]], **extra: Any) -> AsyncIterator[ControlCenter]:
    center = ControlCenter(settings_with(entries, **extra))
    await center.start()
    try:
        yield center
    finally:
        await center.stop()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_an_entry_is_ready_by_fingerprint_and_stop_ends_its_whole_tree(tmp_path: Path) -> None:
    # the "backend" leaves a grandchild in a session of its own before it becomes the ComfyUI stand-in
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(textwrap.dedent("""
        import os, subprocess, sys
        grand = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        print("grandchild", grand.pid, flush=True)
        os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    """))
    entry = comfy_entry(tmp_path)
    entry["command"] = [PY, str(wrapper), *entry["command"][1:]]
    async with center_with({"comfy": entry}) as c:
        app = c.application
        assert [v.state for v in app.launch_list()] == ["stopped"]
        await app.launch_start(["comfy"])
        view = (await app.launch_wait(["comfy"]))[0]
        assert view.state == "running", view.message
        assert view.service_id in c.services  # known to discovery by the time it says running
        lines = [line.text for line in app.launch_console("comfy")]
        grandchild = int(next(t for t in lines if t.startswith("grandchild")).split()[1])
        assert psutil.pid_exists(grandchild) and view.pid is not None
        records = json.loads((c.settings.data_path / "launched.json").read_text())
        assert records["comfy"]["pid"] == view.pid and records["comfy"]["port"] == entry["port"]

        stopped = (await app.launch_stop(["comfy"]))[0]
        assert stopped.state == "stopped" and stopped.pid is None
        assert stopped.last_exit is not None and stopped.last_exit.expected
        assert gone(view.pid) and gone(grandchild)
        assert json.loads((c.settings.data_path / "launched.json").read_text()) == {}


async def test_a_killed_backend_comes_back_its_running_job_fails_with_the_sentence_and_the_queued_one_runs(
        tmp_path: Path) -> None:
    async with center_with({"comfy": comfy_entry(tmp_path, start="with-backlot")},
                           job_concurrency={"comfyui": 1}) as c:
        app = c.application
        first = (await app.launch_wait(["comfy"]))[0]
        assert first.state == "running"
        running = await app.submit("text_to_image", "long", {"workflow": "standin_progress", "seconds": 60})
        queued = await app.submit("text_to_image", "next", {"workflow": "standin_progress", "seconds": 1})
        waiter = EventWaiter(c.bus, JobUpdated)
        await waiter.wait(lambda e: e.job.id == running.id and e.job.state is JobState.RUNNING
                          and e.job.status.fraction is not None, 30)  # on the backend, reporting progress
        waiter.close()
        assert (await app.job(queued.id)).state is JobState.QUEUED

        os.kill(first.pid or 0, signal.SIGKILL)
        failed = await c.jobs.wait(running.id, 30)
        assert failed.state is JobState.FAILED
        assert failed.status.message == "the backend exited (code -9: SIGKILL) and was restarted"
        assert failed.error is not None and failed.error.code == "backend_exited"

        back = await app.launch_wait(["comfy"], ("running",), 60)
        assert back[0].restarts == 1 and back[0].pid != first.pid
        # shown up by the time the launcher says it runs (checked then, not after the reconnect backoff)
        assert {v.record.id: v.state for v in app.services()}[back[0].service_id] == "up"
        assert back[0].last_exit is not None and back[0].last_exit.code == -9 and not back[0].last_exit.expected
        done = await c.jobs.wait(queued.id, 60)
        assert done.state is JobState.SUCCEEDED, done.status.message
        retried = await app.retry(running.id)  # one click: the same job again
        assert retried.state is JobState.QUEUED


async def test_a_command_that_exits_at_once_stops_as_a_crash_loop_with_its_last_lines(tmp_path: Path) -> None:
    entry = {"kind": "comfyui", "command": [PY, "-c", "print('error: no model weights found'); raise SystemExit(3)"],
             "port": free_port(), "start": "with-backlot"}
    async with center_with({"broken": entry}) as c:
        view = (await c.application.launch_wait(["broken"], ("failed",), 60))[0]
        assert "crash loop: exited 3 times" in view.message and "code 3" in view.message
        assert "error: no model weights found" in view.message  # its last lines, with the sentence
        assert view.restarts == 2 and view.pid is None


async def test_a_start_that_never_answers_fails_with_its_lines_and_is_stopped(tmp_path: Path) -> None:
    entry = {"kind": "comfyui", "port": free_port(), "ready_timeout": 1.0,
             "command": [PY, "-c", "print('loading checkpoints', flush=True); import time; time.sleep(120)"]}
    async with center_with({"slow": entry}) as c:
        await c.application.launch_start(["slow"])
        pid = c.launcher.runs["slow"].pid
        view = (await c.application.launch_wait(["slow"], ("failed",), 30))[0]
        assert view.message.startswith("not ready after 1 s (still running); stopped it")
        assert "loading checkpoints" in view.message
        assert pid is not None and gone(pid)


async def test_a_port_held_by_a_process_that_is_not_ours_is_left_alone_and_named(tmp_path: Path) -> None:
    port = free_port()
    holder = subprocess.Popen([PY, "-c", f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); "
                                         "s.listen(); print('ok', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        async with center_with({"comfy": comfy_entry(tmp_path, port=port, start="with-backlot")}) as c:
            view = (await c.application.launch_wait(["comfy"], ("blocked",), 30))[0]
            assert f"pid {holder.pid}" in view.holder and f"port {port} is held by pid {holder.pid}" in view.message
            assert view.pid is None
        assert holder.poll() is None  # never touched, not even when Backlot stopped
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.timeout(180)
async def test_a_backend_left_by_a_killed_backlot_is_adopted_by_the_next(tmp_path: Path, backlot_home: Path) -> None:
    entry = comfy_entry(tmp_path, start="with-backlot")
    config = backlot_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    env_lines = "".join(f'{k} = "{v}"\n' for k, v in entry["env"].items())
    command = ", ".join(json.dumps(a) for a in entry["command"])
    (config / "config.toml").write_text(f"scan_default_ports = false\n[launch.comfy]\nkind = \"comfyui\"\n"
                                        f"command = [{command}]\ncwd = {json.dumps(entry['cwd'])}\n"
                                        f"port = {entry['port']}\nstart = \"with-backlot\"\n[launch.comfy.env]\n"
                                        f"{env_lines}")
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "BACKLOT_API_PORT": "0"}
    first = subprocess.Popen([PY, "-m", "backlot", "--headless"], cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    records = backlot_home / "data" / "launched.json"
    try:
        settings = load_settings(home=backlot_home, env=env)
        # wait until the first Backlot has launched it and it answers (the record is written at spawn)
        for _ in range(600):
            if records.exists() and json.loads(records.read_text() or "{}").get("comfy"):
                if port_in_use("127.0.0.1", entry["port"]):
                    break
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            await asyncio.sleep(0.1)
        pid = json.loads(records.read_text())["comfy"]["pid"]
        first.kill()
        first.wait(30)
        assert psutil.pid_exists(pid) and not gone(pid)  # Backlot's death did not take the backend with it

        center = ControlCenter(settings)
        await center.start()
        try:
            view = (await center.application.launch_wait(["comfy"], ("running",), 30))[0]
            assert view.adopted and view.pid == pid and view.restarts == 0
            assert "adopted pid" in " ".join(line.text for line in center.application.launch_console("comfy"))
        finally:
            await center.stop()
        assert gone(pid)  # closing Backlot stops what it runs, adopted or not
    finally:
        if first.poll() is None:
            first.kill()
        first.wait(30)
        if first.stderr is not None:
            first.stderr.close()


async def test_secrets_never_reach_the_console_or_the_view(tmp_path: Path) -> None:
    key = "sk-live-0123456789abcdef"
    entry = {"kind": "llm", "port": free_port(), "env": {"MY_API_KEY": key},
             "command": [PY, "-c", f"import os; print('key is', os.environ['MY_API_KEY']); print('llm {key}')"]}
    async with center_with({"leaky": entry}, llm_keys={"openai": "sk-openai-secret-999"}) as c:
        await c.application.launch_start(["leaky"])
        view = (await c.application.launch_wait(["leaky"], ("failed",), 60))[0]
        text = "\n".join(line.text for line in c.application.launch_console("leaky"))
        assert f"key is {REDACTED}" in text and key not in text
        assert key not in view.command and key not in view.message and key not in "".join(view.tail)


def test_the_console_keeps_the_newest_lines_and_shows_what_a_terminal_would() -> None:
    console = Console(limit=3, secrets=["hunter22"])
    console.add("one\ntwo\nthr")
    assert [line.text for line in console.lines] == ["one", "two"]
    console.add("ee\n\x1b[32mgreen\x1b[0m\n 10%\r 50%\r100%\npassword hunter22\n")
    assert [line.text for line in console.lines] == ["green", "100%", f"password {REDACTED}"]
    assert [line.n for line in console.since(5)] == [6] and console.next_n == 7


def test_add_from_a_folder_fills_in_each_kind(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    venv_py = comfy / "venv" / "bin" / "python"
    venv_py.parent.mkdir(parents=True)
    venv_py.write_text("#!/bin/sh\n")
    venv_py.chmod(0o755)
    made = presets.from_folder(comfy)
    assert made.name == "comfyui" and made.entry.kind == "comfyui" and made.entry.cwd == comfy
    assert made.entry.command[:2] == [str(venv_py), "main.py"] and str(made.entry.port) in made.entry.command
    assert presets.from_folder(comfy, taken={"comfyui"}).name == "comfyui-2"

    wan = tmp_path / "Wan2GP"
    wan.mkdir()
    (wan / "wgp.py").write_text("")
    entry = presets.from_folder(wan, port=8011).entry
    assert entry.kind == "wan2gp" and entry.command[1:] == [
        "wgp.py", "--mcp", "--mcp-transport", "streamable-http", "--mcp-host", "127.0.0.1", "--mcp-port", "8011"]
    webui = entry.model_copy(update={"command": [PY, "wgp.py", "--server-name", "127.0.0.1", "--server-port", "8011"]})
    assert presets.with_mcp(webui).command == [PY, *entry.command[1:]]

    rvc = tmp_path / "RVC"
    rvc.mkdir()
    (rvc / "infer-web.py").write_text("")
    assert presets.from_folder(rvc, port=7865).entry.command[1:] == ["infer-web.py", "--port", "7865", "--noautoopen"]

    ldm = tmp_path / "AudioLDM"
    (ldm / "audioldm").mkdir(parents=True)
    (ldm / "app.py").write_text("")
    assert presets.from_folder(ldm, port=7860).entry.env["GRADIO_SERVER_PORT"] == "7860"

    llama = tmp_path / "llama.cpp"
    (llama / "build" / "bin").mkdir(parents=True)
    server = llama / "build" / "bin" / "llama-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    with pytest.raises(presets.PresetError, match="no .gguf model"):
        presets.from_folder(llama)
    (llama / "models").mkdir()
    (llama / "models" / "qwen.gguf").write_bytes(b"GGUF")
    made = presets.from_folder(llama, port=8080)
    assert made.entry.kind == "llm" and made.entry.command == [str(server), "-m", str(llama / "models" / "qwen.gguf"),
                                                               "--host", "127.0.0.1", "--port", "8080"]

    with pytest.raises(presets.PresetError, match="is not a ComfyUI, Wan2GP, RVC or AudioLDM checkout"):
        presets.from_folder(tmp_path / "ComfyUI" / "comfy")
    with pytest.raises(presets.PresetError, match="is not a folder"):
        presets.from_folder(tmp_path / "nowhere")


async def test_the_api_lists_starts_follows_and_stops_entries(tmp_path: Path) -> None:
    async with running_api(launch={"comfy": comfy_entry(tmp_path)}) as api:
        c = await api.client()
        await c.result("events.subscribe", {"topics": ["launch.updated", "launch.console"]})
        listed = (await c.result("launch.list"))["entries"]
        assert [(e["name"], e["state"], e["kind"]) for e in listed] == [("comfy", "stopped", "comfyui")]
        started = (await c.result("launch.start", {"names": ["comfy"]}))["entries"][0]
        assert started["state"] == "starting" and started["pid"]
        running = await c.notification("launch.updated", lambda p: p["state"] == "running", timeout=60)
        assert running["service_id"] == started["service_id"]
        line = await c.notification("launch.console", lambda p: p["name"] == "comfy")
        assert line["lines"][0]["n"] >= 1
        console = await c.result("launch.console", {"name": "comfy"})
        assert console["lines"] and console["next"] == console["lines"][-1]["n"]
        later = await c.result("launch.console", {"name": "comfy", "since": console["next"]})
        assert all(line["n"] > console["next"] for line in later["lines"])

        unknown = await c.call("launch.start", {"names": ["nope"]})
        assert unknown["error"]["code"] == -32003 and "comfy" in unknown["error"]["message"]
        assert (await c.call("launch.stop", {"names": []}))["error"]["code"] == -32602
        assert (await c.call("launch.restart", {"names": ["comfy"], "mcp": True}))["error"]["code"] == -32602
        stopped = (await c.result("launch.stop", {"names": ["comfy"]}))["entries"][0]
        assert stopped["state"] == "stopped" and stopped["last_exit"]["expected"]
        other = comfy_entry(tmp_path / "other")
        added = (await c.result("launch.add", {"name": "second", "entry": other}))["entries"][0]
        assert added["state"] == "stopped" and added["port"] == other["port"]
        assert [e["name"] for e in (await c.result("launch.list"))["entries"]] == ["comfy", "second"]
        clash = await c.call("launch.add", {"name": "third", "entry": {**other, "kind": "comfyui"}})
        assert clash["error"]["code"] == -32602 and "'second'" in clash["error"]["message"]
        bad = await c.call("launch.add", {"name": "fourth", "entry": {"kind": "comfyui", "command": [], "port": 9}})
        assert bad["error"]["code"] == -32602 and "command" in bad["error"]["message"]
        preset = await c.call("launch.preset", {"folder": str(tmp_path)})
        assert preset["error"]["code"] == -32602 and "checkout" in preset["error"]["message"]


async def test_a_backend_restarted_by_hand_is_up_within_a_second_not_after_its_backoff(standin: Any) -> None:
    port = free_port()
    sp = standin("comfyui", port=port)
    settings = load_settings(cli={"urls": [sp.url], "scan_default_ports": False, "health_interval": 60,
                                  "health_timeout": 1.0, "reconnect_backoff_base": 60, "api_port": 0,
                                  "breaker_threshold": 1})
    center = ControlCenter(settings)
    waiter = EventWaiter(center.bus, HealthChanged)
    await center.start()
    try:
        sid = f"comfyui@127.0.0.1:{port}"
        await waiter.wait(lambda e: e.service_id == sid and e.new is ServiceState.UP, 30)
        sp.kill()
        center.reconnect(sid)  # check now: it is down, and the next check is a minute away
        await waiter.wait(lambda e: e.service_id == sid and e.new is ServiceState.DOWN, 30)
        mark = len(waiter.events)
        standin("comfyui", port=port)
        await waiter.wait(lambda e: e.service_id == sid and e.new is ServiceState.UP, 10, start=mark)
    finally:
        waiter.close()
        await center.stop()


async def test_a_job_for_a_backend_backlot_is_still_starting_waits_for_it_instead_of_being_refused(
        tmp_path: Path) -> None:
    async with center_with({"comfy": comfy_entry(tmp_path, start="with-backlot")}) as c:
        app = c.application
        assert c.launcher.view("comfy").state == "starting"  # from the moment Backlot starts it
        job = await app.submit("text_to_image", "first shot", {"workflow": "standin_image"})
        assert job.route is not None and job.route.waiting_for_start and "which Backlot is starting" in job.route.reason
        done = await c.jobs.wait(job.id, 60)
        assert done.state is JobState.SUCCEEDED, done.status.message
        assert done.attempts[0].backend == c.launcher.view("comfy").service_id


async def test_an_entry_that_keeps_running_outlives_backlot_and_the_next_adopts_or_stops_it(tmp_path: Path) -> None:
    entries = {"comfy": comfy_entry(tmp_path, start="with-backlot", keep_running=True)}
    async with center_with(entries) as c:
        pid = (await c.application.launch_wait(["comfy"], ("running",), 60))[0].pid
    assert pid is not None and not gone(pid)  # closing Backlot left it running, as the entry says
    async with center_with(entries) as c:
        view = (await c.application.launch_wait(["comfy"], ("running",), 60))[0]
        assert view.adopted and view.pid == pid
        await c.application.launch_stop(["comfy"])
    assert gone(pid)

    async with center_with(entries) as c:  # once more, now with the settings saying orphans are stopped
        pid = (await c.application.launch_wait(["comfy"], ("running",), 60))[0].pid
    assert pid is not None and not gone(pid)
    async with center_with({"comfy": {**entries["comfy"], "start": "on-demand"}}, orphans="stop") as c:
        assert gone(pid) and c.launcher.view("comfy").state == "stopped"


async def test_closing_while_a_backend_is_being_spawned_leaves_no_process(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from backlot.services.launch import process

    spawning, spawned = threading.Event(), []
    real = process.spawn

    def slow_spawn(entry: Any, log_path: Path, base_env: Any = None) -> Any:  # the real spawn, a moment later
        spawning.set()
        time.sleep(0.5)
        popen = real(entry, log_path, base_env)
        spawned.append(popen.pid)
        return popen

    monkeypatch.setattr(process, "spawn", slow_spawn)
    center = ControlCenter(settings_with({"comfy": comfy_entry(tmp_path, start="with-backlot")}))
    await center.start()
    assert await asyncio.to_thread(spawning.wait, 10)
    await center.stop()  # while the worker thread is still starting the process
    assert spawned and gone(spawned[0])
