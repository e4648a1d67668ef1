"""Discovery over 32 candidate ports: all stand-ins up, then with 8 black-holed candidates.

Prints wall times, the ratio to the original 5 s target, and the ratio to a sequential scan of the
same candidates in the same run. Last line: {"bench": "discovery", ...}.
Run: .venv/bin/python -m bench.discovery [--repeat N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backlot.services.connectivity.discovery import Candidate, probe, scan  # noqa: E402
from backlot.services.models import FoundBy  # noqa: E402
from backlot.standins import launcher  # noqa: E402

ORIGINAL_TARGET_MS = 5000.0
TARGET_MS = 100.0


def closed_ports(n: int) -> list[int]:
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def black_holes(n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
    return socks


async def sequential(cands: list[Candidate], connect_timeout: float, budget: float) -> tuple[float, int]:
    timeout = aiohttp.ClientTimeout(total=budget, sock_connect=connect_timeout, sock_read=budget)
    start = time.perf_counter()
    found = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for c in cands:
            if await probe(session, c, timeout) is not None:
                found += 1
    return (time.perf_counter() - start) * 1000, found


async def run(repeat: int, budget: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        procs = launcher.start_many(launcher.KINDS, data_root=Path(tmp))
        holes = black_holes(8)
        try:
            live = [Candidate("127.0.0.1", p.port, FoundBy.CUSTOM_PORT) for p in procs.values()]
            filler = [Candidate("127.0.0.1", p, FoundBy.DEFAULT_PORT) for p in closed_ports(32 - len(live))]
            reachable = live + filler
            holed = live + filler[: 32 - len(live) - 8] + [Candidate("127.0.0.1", s.getsockname()[1], FoundBy.CUSTOM_PORT)
                                                          for s in holes]
            await scan(reachable, budget, 0.5)  # warm-up: imports, first connections
            times, found = [], 0
            for _ in range(repeat):
                r = await scan(reachable, budget, 0.5)
                times.append(r.duration_ms)
                found = len(r.records)
            seq_times = []
            for _ in range(max(1, repeat // 4)):
                t, _ = await sequential(reachable, 0.5, budget)
                seq_times.append(t)
            hole_times, hole_found = [], 0
            for _ in range(3):
                r = await scan(holed, budget, 0.5)
                hole_times.append(r.duration_ms)
                hole_found = len(r.records)
        finally:
            for s in holes:
                s.close()
            launcher.stop_all(procs)
    value = statistics.median(times)
    baseline = statistics.median(seq_times)
    holed_ms = max(hole_times)
    print(f"candidates: 32 ports ({len(procs)} live stand-ins, {32 - len(procs)} closed)")
    print(f"all reachable: median {value:.1f} ms over {repeat} runs (min {min(times):.1f}, max {max(times):.1f}); "
          f"found {found}/{len(procs)}")
    print(f"sequential scan of the same candidates: median {baseline:.1f} ms -> concurrent is {baseline / value:.1f}x faster")
    print(f"vs the original 5 s target: {ORIGINAL_TARGET_MS / value:.0f}x better")
    print(f"with 8 black-holed candidates: worst {holed_ms:.0f} ms of a {budget * 1000:.0f} ms budget; "
          f"found {hole_found}/{len(procs)}; {ORIGINAL_TARGET_MS / holed_ms:.1f}x better than 5 s")
    met = value <= TARGET_MS and holed_ms <= budget * 1000 + 50 and found == len(procs) and hole_found == len(procs)
    return {"bench": "discovery", "value_ms": round(value, 1), "baseline": round(baseline, 1),
            "ratio": round(value / baseline, 3), "target": TARGET_MS, "met": met,
            "black_holes_ms": round(holed_ms, 1), "budget_ms": budget * 1000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--budget", type=float, default=2.0)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.repeat, a.budget))))


if __name__ == "__main__":
    main()
