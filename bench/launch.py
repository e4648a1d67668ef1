"""Launcher benchmark: a launched backend killed (SIGKILL) → serving again, against that backend's own cold start
measured in the same run; and the instance's idle CPU while it runs three launched backends.

"Serving" is the launcher's "running": the kind's fingerprint answers on the port and discovery knows the service.
The restart overhead is crash→serving minus the cold start (spawn→serving); target ≤ 1 s. The backend is the
ComfyUI stand-in, or a real checkout with ``--folder`` (e.g. a ComfyUI or Wan2GP folder: "Add from a folder" makes
its entry). Idle CPU: a headless instance (its own process) with three stand-ins launched, sampled with psutil.
Last line: {"bench": "launch", ..., "met": bool}.
Run: .venv/bin/python -m bench.launch [--repeat 5] [--folder PATH [--env KEY=VALUE]] [--idle-seconds 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from backlot.services.config import load_settings  # noqa: E402
from backlot.services.control import ControlCenter  # noqa: E402
from backlot.services.launch import presets  # noqa: E402
from backlot.services.launch.process import port_in_use  # noqa: E402
from backlot.standins import demo  # noqa: E402

TARGET_OVERHEAD_S = 1.0


def entry_for(folder: str | None, data: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    if folder:
        made = presets.from_folder(folder)
        return {**made.entry.model_dump(mode="json"), "start": "on-demand", "env": {**made.entry.env, **(env or {})}}
    spec = demo.launch_specs(data, 1.0, ("comfyui",))[0]["demo-comfyui"]
    return {**spec, "demo": False, "start": "on-demand"}


async def restarts(folder: str | None, repeat: int, home: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    entry = entry_for(folder, home / "standins", env)
    timeout = float(entry.get("ready_timeout", 180))
    settings = load_settings(home=home, cli={"launch": {"backend": entry}, "scan_default_ports": False,
                                             "api_port": 0, "log_level": "WARNING"})
    center = ControlCenter(settings)
    await center.start()
    app = center.application
    cold, crash = [], []
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            await app.launch_start(["backend"])
            view = (await app.launch_wait(["backend"], ("running", "failed"), timeout))[0]
            if view.state != "running":
                raise SystemExit(f"the backend did not start: {view.message}")
            cold.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            os.kill(view.pid or 0, signal.SIGKILL)
            await app.launch_wait(["backend"], ("starting", "restarting"), 30)
            back = (await app.launch_wait(["backend"], ("running", "failed"), timeout))[0]
            if back.state != "running":
                raise SystemExit(f"the backend did not come back: {back.message}")
            crash.append(time.perf_counter() - t1)
            await app.launch_stop(["backend"])
    finally:
        await center.stop()
    c, k = statistics.median(cold), statistics.median(crash)
    return {"backend": f"{entry['kind']} from {folder}" if folder else "comfyui stand-in", "cold_start_s": round(c, 3),
            "crash_to_serving_s": round(k, 3), "restart_overhead_s": round(k - c, 3),
            "cold_runs": [round(x, 3) for x in cold], "crash_runs": [round(x, 3) for x in crash]}


def idle_cpu(seconds: float, home: Path) -> dict[str, Any]:
    specs, _ = demo.launch_specs(home / "standins", 1.0, ("comfyui", "wan2gp", "llm"))
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    lines = ["scan_default_ports = false", "log_level = \"WARNING\""]
    for name, spec in specs.items():
        lines += [f"[launch.{name.removeprefix('demo-')}]", f"kind = {json.dumps(spec['kind'])}",
                  f"command = {json.dumps(spec['command'])}", f"cwd = {json.dumps(spec['cwd'])}",
                  f"port = {spec['port']}", 'start = "with-backlot"',
                  f"[launch.{name.removeprefix('demo-')}.env]",
                  *(f"{k} = {json.dumps(v)}" for k, v in spec["env"].items())]
    (config / "config.toml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "BACKLOT_HOME": str(home), "BACKLOT_API_PORT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "backlot", "--headless"], cwd=str(ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not all(port_in_use("127.0.0.1", s["port"]) for s in specs.values()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the instance's launched backends did not all start")
            time.sleep(0.2)
        time.sleep(5)  # let the first health rounds and inventory reads settle
        me = psutil.Process(proc.pid)
        before, t0 = me.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, wall = me.cpu_times(), time.monotonic() - t0
        used = (after.user - before.user) + (after.system - before.system)
        return {"idle_cpu_percent": round(100 * used / wall, 2), "idle_seconds": round(wall, 1),
                "launched": len(specs)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--folder", help="a real checkout to launch instead of the ComfyUI stand-in")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for the --folder backend (repeatable)")
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    a = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in a.env)
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(restarts(a.folder, a.repeat, Path(tmp) / "restart", env))
        print(f"{r['backend']}: cold start {r['cold_start_s']:.3f} s, killed → serving again {r['crash_to_serving_s']:.3f}"
              f" s: restart overhead {r['restart_overhead_s']:+.3f} s (target ≤ {TARGET_OVERHEAD_S} s)", file=sys.stderr)
        idle = idle_cpu(a.idle_seconds, Path(tmp) / "idle") if a.idle_seconds > 0 else {}
        if idle:
            print(f"instance idle with {idle['launched']} launched backends: {idle['idle_cpu_percent']:.2f} % of one "
                  f"core over {idle['idle_seconds']} s", file=sys.stderr)
    met = r["restart_overhead_s"] <= TARGET_OVERHEAD_S
    print(json.dumps({"bench": "launch", **r, **idle, "target": f"restart overhead <= {TARGET_OVERHEAD_S} s",
                      "met": met}))


if __name__ == "__main__":
    main()
