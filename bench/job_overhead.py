"""Job overhead: N instant stand-in jobs through Backlot vs the same requests sent straight to the stand-in.

Both paths do the same work per job: queue the workflow with a client id, follow the WebSocket to
``execution_success``, read ``/history`` and download the PNG through ``/view``. Jobs run one after
another so the figure is per-job latency. Last line: {"bench": "job_overhead", ...}.
Run: .venv/bin/python -m bench.job_overhead [--jobs N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backlot.services.backends.comfyui.workflows import load_templates  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.control import ControlCenter  # noqa: E402
from backlot.services.models import JobState  # noqa: E402
from backlot.standins import launcher  # noqa: E402

PARAMS = {"workflow": "standin_image", "width": 64, "height": 64}


async def direct(url: str, n: int, out: Path) -> list[float]:
    template = load_templates()["standin_image"]
    times = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            t0 = time.perf_counter()
            wf, _ = template.build({**PARAMS, "color": 0x010101 * (i % 200) + 7, "prefix": f"direct/{i}"})
            cid = uuid.uuid4().hex
            async with s.ws_connect(f"{url.replace('http', 'ws')}/ws?clientId={cid}") as ws:
                async with s.post(f"{url}/prompt", json={"prompt": wf, "client_id": cid}) as r:
                    pid = (await r.json())["prompt_id"]
                async for msg in ws:
                    frame = json.loads(msg.data)
                    if frame["type"] == "execution_success" and frame["data"]["prompt_id"] == pid:
                        break
            async with s.get(f"{url}/history/{pid}") as r:
                entry = (await r.json())[pid]
            img = next(iter(entry["outputs"].values()))["images"][0]
            async with s.get(f"{url}/view", params=img) as r:
                (out / f"{i}.png").write_bytes(await r.read())
            times.append((time.perf_counter() - t0) * 1000)
    return times


async def through_backlot(url: str, n: int, home: Path) -> list[float]:
    settings = load_settings(home=home, cli={"urls": [url], "scan_default_ports": False, "health_interval": 30})
    center = ControlCenter(settings)
    await center.start()
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            job = await center.jobs.submit("text_to_image", f"bench {i}", dict(PARAMS))
            done = await center.jobs.wait(job.id, 60)
            assert done.state is JobState.SUCCEEDED, done.status
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await center.stop()
    return times


async def run(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sp = launcher.start("comfyui", data=root / "comfy")
        try:
            (root / "direct").mkdir()
            await direct(sp.url, 5, root / "direct")  # warm-up both paths
            await through_backlot(sp.url, 5, root / "warm")
            d = await direct(sp.url, n, root / "direct")
            b = await through_backlot(sp.url, n, root / "home")
        finally:
            sp.stop()
    dm, bm = statistics.median(d), statistics.median(b)
    added = bm - dm
    ratio = bm / dm
    print(f"{n} jobs each, one at a time, standin_image 64x64 on the ComfyUI stand-in")
    print(f"direct to the stand-in: median {dm:.1f} ms/job (p90 {statistics.quantiles(d, n=10)[-1]:.1f})")
    print(f"through Backlot:        median {bm:.1f} ms/job (p90 {statistics.quantiles(b, n=10)[-1]:.1f})")
    print(f"added by Backlot: {added:.1f} ms/job, ratio {ratio:.3f}x (target <= 1.05x or <= 10 ms added)")
    return {"bench": "job_overhead", "value_ms": round(bm, 2), "baseline": round(dm, 2), "ratio": round(ratio, 3),
            "added_ms": round(added, 2), "target": "<=1.05x or <=10 ms", "met": ratio <= 1.05 or added <= 10}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=40)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.jobs))))


if __name__ == "__main__":
    main()
