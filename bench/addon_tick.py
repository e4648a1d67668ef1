"""The Blender addon's timer tick: how long one tick holds Blender's main thread (target <= 2 ms).

Runs the addon in every Blender the tests use (tests/blender_hosts.py: Debian's ``blender -b`` 3.4 and
PyPI's ``bpy`` 4.2, 4.5 and 5.0 where ``make test`` installed them) against the test double of the socket
API (tests/addon_fake_api.py) with N running jobs: idle ticks, ticks that apply one ``job.updated`` per job
(placeholders renamed and recoloured), and the ticks that import a finished result. Without Blender it
times the same session outside Blender with a no-op timeline. ``met`` judges the steady ticks; the
tick that imports a result (at most one per tick) is reported apart: Blender's ``new_movie``/``new_sound``
probe the file on the main thread, which no addon can move off it. Last line: {"bench": "addon_tick", ...}.
Run: .venv/bin/python -m bench.addon_tick [--jobs N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from addon_fake_api import FakeBacklot  # noqa: E402
from blender_hosts import BlenderHost, hosts  # noqa: E402
from backlot.blender_addon.client import Notification  # noqa: E402
from backlot.blender_addon.package import build_zip  # noqa: E402
from backlot.blender_addon.session import AddonSession  # noqa: E402

TARGET_MS = 2.0


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else 0.0


def in_blender(host: BlenderHost, fake: FakeBacklot, tmp: Path, jobs: int) -> dict[str, Any]:
    """Times measured by the addon flow script's bench mode inside one Blender."""
    tmp = tmp / host.id
    tmp.mkdir()
    result, ready = tmp / "bench.json", tmp / "ready"
    env = {**os.environ, "BACKLOT_TEST_MODE": "bench", "BACKLOT_TEST_ZIP": str(build_zip(tmp)),
           "BACKLOT_TEST_HOST": "127.0.0.1", "BACKLOT_TEST_PORT": str(fake.port), "BACKLOT_TEST_TOKEN": fake.token,
           "BACKLOT_TEST_BLEND": str(tmp / "b.blend"), "BACKLOT_TEST_RESULT": str(result),
           "BACKLOT_BENCH_READY": str(ready), "BACKLOT_BENCH_JOBS": str(jobs),
           "BLENDER_USER_SCRIPTS": str(tmp / "us"), "BLENDER_USER_CONFIG": str(tmp / "uc"),
           "BLENDER_USER_EXTENSIONS": str(tmp / "ue")}
    fake.hold("*")
    proc = subprocess.Popen(host.command(ROOT / "tests" / "blender_scripts" / "addon_flow.py"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a file written by another process: nothing to wait on but the file itself
    fake.release()
    out, _ = proc.communicate(timeout=120)
    data = json.loads(result.read_text()) if result.exists() else {}
    if proc.returncode or "error" in data:
        raise SystemExit(f"{host.id} failed: {data.get('error')}\n{out[-3000:]}")
    return data


class _NoTimeline:
    def update_placeholder(self, rec: Any) -> None: ...
    def remove_placeholder(self, rec: Any) -> None: ...
    def import_result(self, rec: Any, kind: str, path: str) -> list[str]: return []
    def save_scene(self, scene: str, text: str) -> None: ...
    def busy(self) -> bool: return False
    def redraw(self) -> None: ...


def outside_blender(fake: FakeBacklot, jobs: int) -> dict[str, Any]:
    """The same session and messages with a timeline that does nothing: the cost of the pure part."""
    s = AddonSession(_NoTimeline())
    s.connect("127.0.0.1", fake.port, token=fake.token)
    try:
        while not (s.connected and s.tasks):
            s.tick()
            assert s.client is not None
            s.client.wait(0.05)
        book = s.book
        for i in range(jobs):
            rec = book.add("Scene", f"bench {i}", "text_to_image", i * 60, 1, 48, "image")
            book.accepted(rec.key, {"id": f"job{i}", "seq": i + 1, "state": "running", "updated_at": 1.0})
        idle, updates = [], []
        for _ in range(500):
            t0 = time.perf_counter()
            s.tick()
            idle.append((time.perf_counter() - t0) * 1000)
        for i in range(300):
            for k in range(jobs):
                s.client.inbox.append(Notification("job.updated", {"job": {  # type: ignore[union-attr]
                    "id": f"job{k}", "state": "running", "updated_at": 2.0 + i,
                    "status": {"fraction": ((i + k) % 100) / 100}}}))
            t0 = time.perf_counter()
            s.tick()
            updates.append((time.perf_counter() - t0) * 1000)
        return {"idle_ms": idle, "updates_ms": updates, "updates_per_tick": jobs, "import_ms": []}
    finally:
        s.disconnect()


def main() -> None:
    """Run and print figures; the last line is the JSON summary."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10)
    args = ap.parse_args()
    blenders = hosts()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fake = FakeBacklot(tmp / "out")
        fake.start()
        try:
            runs: dict[str, dict[str, Any]] = {"pure": outside_blender(fake, args.jobs)}
            for host in blenders:
                runs[host.id] = in_blender(host, fake, tmp, args.jobs)
        finally:
            fake.stop()
    if not blenders:
        print("blender: skipped (no Blender is installed; `make blenders` and `apt-get install blender`)")
    summary: dict[str, Any] = {"bench": "addon_tick", "jobs": args.jobs, "target_ms": TARGET_MS}
    for name, data in runs.items():
        idle, upd, imp = data["idle_ms"], data["updates_ms"], data["import_ms"]
        print(f"{name}: idle tick p50 {statistics.median(idle):.3f} ms, p99 {pct(idle, 99):.3f} ms; "
              f"with {data['updates_per_tick']} job updates p50 {statistics.median(upd):.3f} ms, "
              f"p99 {pct(upd, 99):.3f} ms, max {max(upd):.3f} ms"
              + (f"; import ticks {len(imp)}: median {statistics.median(imp):.3f} ms, max {max(imp):.3f} ms"
                 if imp else ""))
        summary[name] = {"idle_p50_ms": round(statistics.median(idle), 4), "idle_p99_ms": round(pct(idle, 99), 4),
                         "updates_p50_ms": round(statistics.median(upd), 4), "updates_p99_ms": round(pct(upd, 99), 4),
                         "import_max_ms": round(max(imp), 3) if imp else None}
    measured = [h.id for h in blenders] or ["pure"]
    summary["where"] = measured
    summary["met"] = all(summary[m]["idle_p99_ms"] <= TARGET_MS and summary[m]["updates_p99_ms"] <= TARGET_MS
                         for m in measured)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
