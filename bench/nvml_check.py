"""A prepared check for a machine with an NVIDIA GPU: what NVML reports, raw and through GpuSampler.

Run: .venv/bin/python -m bench.nvml_check. It allocates nothing itself; start a GPU program first
to see per-process memory. Last line: {"bench": "nvml_check", ...}.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backlot.services.connectivity.gpu import GpuSampler  # noqa: E402


async def main() -> dict[str, object]:
    sampler = GpuSampler()
    t0 = time.perf_counter()
    await sampler.start()
    start_ms = (time.perf_counter() - t0) * 1000
    print(f"NVML: {sampler.reason} (init {start_ms:.1f} ms)")
    if not sampler.available:
        return {"bench": "nvml_check", "value_ms": round(start_ms, 2), "baseline": None, "ratio": None,
                "target": "GPU present", "met": False, "reason": sampler.reason}
    times = []
    samples = ()
    for _ in range(20):
        t0 = time.perf_counter()
        samples = await sampler.sample([])
        times.append((time.perf_counter() - t0) * 1000)
    await sampler.stop()
    for s in samples:
        print(f"GPU {s.index}: {s.name}, {s.used / 2**30:.2f} / {s.total / 2**30:.2f} GiB used, util {s.utilization}%, "
              f"{len(s.processes)} process(es): " + ", ".join(f"{p.pid} {p.name} {p.used_bytes}" for p in s.processes))
    times.sort()
    return {"bench": "nvml_check", "value_ms": round(times[len(times) // 2], 2), "baseline": None, "ratio": None,
            "target": "sample < 50 ms", "met": times[len(times) // 2] < 50, "gpus": len(samples)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
