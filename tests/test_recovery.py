"""Kill Backlot (SIGKILL) with 10 jobs queued or running, restart it: every job is accounted for."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.models import JobState

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from backlot.services.config import load_settings
    from backlot.services.control import ControlCenter
    from backlot.services.events import JobUpdated

    async def main():
        c = ControlCenter(load_settings())
        await c.start()
        running = set()
        done = asyncio.Event()
        def seen(e):
            if e.job.remote_ref and e.job.status.step is not None:
                running.add(e.job.id)
                if len(running) == 2:
                    done.set()
        c.bus.subscribe(seen, JobUpdated)
        for i in range(10):
            await c.jobs.submit("text_to_image", f"shot {{i}}", {{"workflow": "standin_progress", "seconds": 2.0}})
        await done.wait()
        print("TWO-RUNNING " + " ".join(sorted(running)), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


def queue_empty(url: str) -> bool:
    with urllib.request.urlopen(url + "/queue", timeout=5) as r:
        q = json.load(r)
    return not q["queue_running"] and not q["queue_pending"]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sigkill_with_ten_jobs_then_restart_accounts_for_all(standin: Any, backlot_home: Path) -> None:
    a, b = standin("comfyui"), standin("comfyui")
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "BACKLOT_URLS": f"{a.url},{b.url}",
           "BACKLOT_SCAN_DEFAULT_PORTS": "false", "BACKLOT_JOB_CONCURRENCY": '{"comfyui": 1}',
           "BACKLOT_LOG_LEVEL": "WARNING"}

    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line.startswith("TWO-RUNNING"):
        proc.kill()
        pytest.fail(f"the first Backlot did not get two jobs running: {line!r} {proc.stderr.read()}")
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    deadline = time.monotonic() + 60
    while not queue_empty(a.url):  # A finishes its job while Backlot is dead
        assert time.monotonic() < deadline
        time.sleep(0.1)
    b.kill()  # B's job cannot be re-attached: B is gone

    db = backlot_home / "data" / "jobs.sqlite3"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(con.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    assert states == {"running": 2, "queued": 8}

    settings = load_settings(cli={"urls": [a.url, b.url], "scan_default_ports": False, "discovery_budget": 1.0,
                                  "job_concurrency": {"comfyui": 1}})
    center = ControlCenter(settings)
    await center.start()
    try:
        jobs = await center.jobs.list(limit=100)
        assert len(jobs) == 10
        for j in jobs:
            await center.jobs.wait(j.id, 120)
        final = {j.id: j for j in await center.jobs.list(limit=100)}
    finally:
        await center.stop()
    by_state: dict[JobState, list[Any]] = {}
    for j in final.values():
        by_state.setdefault(j.state, []).append(j)
    assert len(by_state.get(JobState.INTERRUPTED, [])) == 1
    assert len(by_state.get(JobState.SUCCEEDED, [])) == 9
    (lost,) = by_state[JobState.INTERRUPTED]
    assert lost.routed_to == f"comfyui@127.0.0.1:{b.port}" and "not reachable" in lost.status.message
    recovered = [j for j in by_state[JobState.SUCCEEDED] if j.routed_to == f"comfyui@127.0.0.1:{a.port}"
                 and len(j.attempts) == 1 and j.started_at is not None and j.started_at < lost.finished_at
                 and j.remote_ref]
    assert recovered, "the job A finished while Backlot was down was not recovered"
    for j in by_state[JobState.SUCCEEDED]:
        (out,) = j.outputs
        assert out.path.is_file() and out.mime == "image/png"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
