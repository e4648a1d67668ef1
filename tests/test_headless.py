"""`backlot --headless` sees a stand-in die and recover, saying so once each in its log."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float = 30) -> str:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"log ended before {needle!r}:\n{''.join(seen)}")
            seen.append(line)
            if needle in line:
                return line


async def test_headless_logs_one_failure_and_one_recovery(standin: Any, backlot_home: Path) -> None:
    sp = standin("comfyui")
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home), "BACKLOT_URLS": sp.url, "BACKLOT_HEALTH_INTERVAL": "0.3",
           "BACKLOT_RECONNECT_BACKOFF_BASE": "0.1", "BACKLOT_RECONNECT_BACKOFF_MAX": "0.5",
           "BACKLOT_DISCOVERY_BUDGET": "1", "BACKLOT_API_PORT": "0"}  # a free port: tests run side by side
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "main.py"), "--headless",
                                                env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None
    sid = f"comfyui@127.0.0.1:{sp.port}"
    seen: list[str] = []
    try:
        await read_until(proc.stderr, "running headless", seen)
        sp.kill()
        await read_until(proc.stderr, f"{sid} is down", seen)
        standin("comfyui", port=sp.port)
        await read_until(proc.stderr, f"{sid} recovered", seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        code = await proc.wait()
    log = "".join(seen) + rest.decode()
    assert code == 0, log
    assert log.count(f"{sid} is down") == 1 and log.count(f"{sid} recovered") == 1, log
    assert "Backlot stopped" in log
