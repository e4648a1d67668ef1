"""Socket API: round trip and calls/s of session.ping and jobs.get vs a bare asyncio NDJSON echo server.

Backlot's API (a ControlCenter with ``serve_api``, one job in its store) and an echo server that
writes every line straight back run in this process; the load comes from a separate client process
(``--client``), so the servers' loop has a core of its own. The client does the same work for both:
encode a request, send it, read a line, decode it. Round trips are sequential calls (p50/p99);
calls/s come from pipelining (up to ``WINDOW`` requests in flight per connection), on one connection
and on 16. Last line: {"bench": "api", ...}.
Run: .venv/bin/python -m bench.api [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOW = 64  # requests in flight per connection when pipelining (the server allows 64)
LIMIT = 16 << 20


# ----- the client process -----
async def _open(port: int, token_file: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=LIMIT)
    if token_file:
        token = Path(token_file).read_text(encoding="utf-8").strip()
        writer.write(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "session.hello",
                                 "params": {"token": token, "client": "bench", "protocol": 1}}).encode() + b"\n")
        assert "result" in json.loads(await reader.readline())
    return reader, writer


def _request(i: int, method: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode() + b"\n"


async def _sequential(port: int, token: str | None, method: str, params: dict[str, Any], n: int) -> list[float]:
    reader, writer = await _open(port, token)
    times = []
    try:
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            writer.write(_request(i, method, params))
            msg = json.loads(await reader.readline())
            times.append((time.perf_counter() - t0) * 1e6)
            assert msg["id"] == i and "error" not in msg, msg
    finally:
        writer.close()
        await writer.wait_closed()
    return times


async def _pipelined(port: int, token: str | None, method: str, params: dict[str, Any], n: int) -> None:
    reader, writer = await _open(port, token)
    window = asyncio.Semaphore(WINDOW)

    async def send() -> None:
        for i in range(1, n + 1):
            await window.acquire()
            writer.write(_request(i, method, params))
            if i % WINDOW == 0:
                await writer.drain()

    sender = asyncio.create_task(send(), name="bench-send")
    try:
        for _ in range(n):
            msg = json.loads(await reader.readline())
            assert "error" not in msg, msg
            window.release()
        await sender
    finally:
        writer.close()
        await writer.wait_closed()


async def client(port: int, token: str | None, method: str, params: dict[str, Any], mode: str, n: int,
                 conns: int) -> dict[str, Any]:
    """Run one measurement; latencies in microseconds, rate in calls/s over all connections."""
    t0 = time.perf_counter()
    if mode == "rtt":
        runs = await asyncio.gather(*(_sequential(port, token, method, params, n) for _ in range(conns)))
        elapsed = time.perf_counter() - t0
        lat = sorted(t for run in runs for t in run)
        return {"p50_us": statistics.median(lat), "p99_us": lat[int(len(lat) * 0.99) - 1],
                "calls_s": len(lat) / elapsed}
    await asyncio.gather(*(_pipelined(port, token, method, params, n) for _ in range(conns)))
    return {"calls_s": n * conns / (time.perf_counter() - t0)}


async def plan(steps: list[dict[str, Any]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Every step once per round, interleaved, so a busy machine slows the echo server and the API alike."""
    out: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for st in steps:
            out.setdefault(st["label"], []).append(await client(st["port"], st["token"], st["method"], st["params"],
                                                                st["mode"], st["n"], st["conns"]))
    return out


# ----- the server process -----
async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
    finally:
        writer.close()


async def run(quick: bool) -> dict[str, Any]:
    """Serve both, drive them from one client process, report."""
    from backlot.services.config import load_settings
    from backlot.services.control import ControlCenter
    from backlot.services.models import Job, JobState

    rounds, rtt_n, pipe_n = (3, 200, 2000) if quick else (7, 1000, 10000)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=tmp, cli={"api_port": 0, "scan_default_ports": False})
        center = ControlCenter(settings, serve_api=True, discover_on_start=False)
        await center.start()
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0, limit=LIMIT)
        try:
            job = Job(id="benchjob0001", task="text_to_image", prompt="a lighthouse", state=JobState.SUCCEEDED)
            await center.store.insert(job)
            assert center.api is not None
            api_port, echo_port = center.api.port, echo.sockets[0].getsockname()[1]
            token = str(settings.paths.token_file)  # the client reads it: a secret never goes on a command line
            targets = [("echo", echo_port, None, "session.ping", {}),
                       ("session.ping", api_port, token, "session.ping", {}),
                       ("jobs.get", api_port, token, "jobs.get", {"job": job.id})]
            steps = [{"label": f"{name}/{mode}/{conns}", "port": port, "token": tok, "method": method,
                      "params": params, "mode": mode, "conns": conns,
                      "n": (rtt_n if mode == "rtt" else pipe_n) // (8 if conns > 1 else 1)}
                     for conns in (1, 16) for mode in ("rtt", "pipe") for name, port, tok, method, params in targets]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.api", "--client", json.dumps({"steps": steps, "rounds": rounds}),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"the bench client failed: {err.decode()[-2000:]}")
            rounds_res = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            echo.close()
            await echo.wait_closed()
            await center.stop()
    print(f"{rounds} interleaved rounds; a round: {rtt_n} sequential and {pipe_n} pipelined calls on one connection, "
          f"an eighth of that on each of 16; figures are medians over the rounds")
    return _report(rounds_res)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _report(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds; a ratio is the median of the per-round ratios (echo and API measured side by side)."""
    print(f"{'':14}{'conns':>6}{'p50 us':>9}{'p99 us':>9}{'seq calls/s':>13}{'pipelined calls/s':>19}")
    for conns in (1, 16):
        for name in ("echo", "session.ping", "jobs.get"):
            r, p = rounds[f"{name}/rtt/{conns}"], rounds[f"{name}/pipe/{conns}"]
            print(f"{name:14}{conns:>6}{_median(r, 'p50_us'):>9.0f}{_median(r, 'p99_us'):>9.0f}"
                  f"{_median(r, 'calls_s'):>13.0f}{_median(p, 'calls_s'):>19.0f}")
    summary: dict[str, Any] = {"bench": "api"}
    for name in ("session.ping", "jobs.get"):
        for conns in (1, 16):
            rtt, echo = rounds[f"{name}/rtt/{conns}"], rounds[f"echo/rtt/{conns}"]
            ratio = statistics.median(a["p50_us"] / e["p50_us"] for a, e in zip(rtt, echo))
            summary[f"{name}_rtt_ratio_{conns}"] = round(ratio, 2)
            summary[f"{name}_p50_us_{conns}"] = round(_median(rtt, "p50_us"), 1)
            summary[f"{name}_p99_us_{conns}"] = round(_median(rtt, "p99_us"), 1)
            summary[f"{name}_calls_s_{conns}"] = round(_median(rounds[f"{name}/pipe/{conns}"], "calls_s"))
        print(f"{name}: round trip {summary[f'{name}_rtt_ratio_1']}x the echo server's on one connection, "
              f"{summary[f'{name}_rtt_ratio_16']}x on 16; {summary[f'{name}_calls_s_1']} calls/s pipelined on one "
              f"connection, {summary[f'{name}_calls_s_16']} on 16 (targets: <= 2x, >= 10000 on one)")
    summary["echo_p50_us_1"] = round(_median(rounds["echo/rtt/1"], "p50_us"), 1)
    summary["echo_calls_s_1"] = round(_median(rounds["echo/pipe/1"], "calls_s"))
    summary["target"] = "round trip <= 2x echo, >= 10000 calls/s on one connection"
    summary["met"] = all(summary[f"{m}_rtt_ratio_1"] <= 2.0 and summary[f"{m}_calls_s_1"] >= 10000
                         for m in ("session.ping", "jobs.get"))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        spec = json.loads(a.client)
        print(json.dumps(asyncio.run(plan(spec["steps"], spec["rounds"]))))
        return
    print(json.dumps(asyncio.run(run(a.quick))))


if __name__ == "__main__":
    main()
