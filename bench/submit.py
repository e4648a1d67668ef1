"""`backlot submit` handed to the running instance vs the old in-process submit of the same job.

Starts a ComfyUI stand-in and a headless instance on it, then times, as separate processes (what a
user pays): `backlot submit` returning once the job is accepted, `python -c pass` (the floor: an
interpreter starting), and the in-process way the CLI used before the socket API (a whole
ControlCenter started in the submitting process, the job run, everything stopped). The thin client
imports only the standard library and the API client, and the instance checks the job. Prints
figures and ends with one JSON line; target: accepted in ≤ 0.15 s.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backlot.standins import launcher

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10
IN_PROCESS = """
import asyncio, sys
from backlot.services.config import load_settings
from backlot.services.control import ControlCenter

async def main():
    center = ControlCenter(load_settings())
    await center.start()
    try:
        job = await center.jobs.submit("text_to_image", "bench", {"workflow": "standin_image"})
        done = await center.jobs.wait(job.id, 60)
        assert done.state.value == "succeeded", done.status
    finally:
        await center.stop()

asyncio.run(main())
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[2:5]} failed: {done.stderr[-1000:]}")
    return took


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        comfy = launcher.start_many(("comfyui",), speed=20, data_root=Path(tmp) / "standins")["comfyui"]
        env = {**os.environ, "BACKLOT_HOME": str(Path(tmp) / "home"), "BACKLOT_URLS": comfy.url,
               "BACKLOT_SCAN_DEFAULT_PORTS": "false", "BACKLOT_API_PORT": "0", "BACKLOT_LOG_LEVEL": "WARNING"}
        backlot = [sys.executable, str(ROOT / "main.py")]
        submit = [*backlot, "submit", "--task", "text_to_image", "--prompt", "bench", "--param",
                  "workflow=standin_image"]
        try:
            first = timed(submit, env)  # starts the instance in the background
            accepted = [timed(submit, env) for _ in range(RUNS)]
            bare = [timed([sys.executable, "-c", "pass"], env) for _ in range(RUNS)]
            in_process = [timed([sys.executable, "-c", IN_PROCESS], env) for _ in range(max(3, RUNS // 3))]
        finally:
            subprocess.run([*backlot, "stop"], env=env, capture_output=True, timeout=60)
            launcher.stop_all({"comfyui": comfy})
    p50 = statistics.median(accepted)
    old = statistics.median(in_process)
    floor = statistics.median(bare)
    print(f"first submit (starts the instance in the background): {first:.2f} s")
    print(f"backlot submit, accepted by the running instance: median {p50:.3f} s, "
          f"min {min(accepted):.3f} s, max {max(accepted):.3f} s over {RUNS}")
    print(f"python -c pass: median {floor:.3f} s over {RUNS}")
    print(f"in-process submit of the same job (old CLI): median {old:.3f} s over {len(in_process)}")
    print(f"ratio accepted / python -c pass: {p50 / floor:.2f}; accepted / in-process: {p50 / old:.2f}")
    print(json.dumps({"bench": "submit", "first_s": round(first, 3), "accepted_p50_s": round(p50, 3),
                      "accepted_max_s": round(max(accepted), 3), "python_pass_p50_s": round(floor, 3),
                      "ratio_to_python": round(p50 / floor, 2), "in_process_p50_s": round(old, 3),
                      "ratio": round(p50 / old, 3), "target_s": 0.15, "met": p50 <= 0.15}))


if __name__ == "__main__":
    main()
