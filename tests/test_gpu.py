"""NVML sampling: the no-GPU path on this machine, and per-process attribution through a stand-in NVML.

The stand-in NVML exists only because no GPU can run here; it follows pynvml's call and return
shapes. The real library is exercised on a GPU machine by bench/nvml_check.py.
"""
from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from backlot.services.config import load_settings
from backlot.services.connectivity.gpu import GpuSampler
from backlot.services.control import ControlCenter
from backlot.services.models import ServiceKind, ServiceRecord
from tests.helpers import serve


async def test_no_nvidia_library_is_no_gpu_not_an_error() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    sampler = GpuSampler()
    await sampler.start()
    assert sampler.available is False and sampler.reason.startswith("no local GPU")
    assert await sampler.sample([]) == ()
    center = ControlCenter(load_settings(cli={"discovery_budget": 0.5}), gpu=sampler)
    await center.start()
    try:
        assert center.keeper.get("gpu-sampler") is None
    finally:
        await center.stop()


class FakeNvml:
    """pynvml's surface for one 24 GiB board with one process on it."""

    class NVMLError(Exception):
        pass

    def __init__(self, pid: int, fail_util: bool = False) -> None:
        self.pid = pid
        self.fail_util = fail_util
        self.shutdown = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None:
        self.shutdown = True
    def nvmlDeviceGetCount(self) -> int:
        return 1
    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"h{i}"
    def nvmlDeviceGetName(self, h: str) -> bytes:
        return b"NVIDIA GeForce RTX 4090"
    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return SimpleNamespace(total=24 * 1024**3, used=9 * 1024**3, free=15 * 1024**3)
    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        if self.fail_util:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=87, memory=40)
    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Any]:
        return [SimpleNamespace(pid=self.pid, usedGpuMemory=7 * 1024**3)]
    def nvmlDeviceGetGraphicsRunningProcesses(self, h: str) -> list[Any]:
        return [SimpleNamespace(pid=self.pid, usedGpuMemory=None), SimpleNamespace(pid=999999, usedGpuMemory=None)]


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({})


async def test_process_memory_is_attributed_to_the_service_listening_on_its_port() -> None:
    async with serve({"/": _ok}) as url:
        port = int(url.rsplit(":", 1)[1])
        rec = ServiceRecord(ServiceKind("comfyui"), "127.0.0.1", port, url, "comfyui")
        fake = FakeNvml(os.getpid(), fail_util=True)
        sampler = GpuSampler(nvml=fake)
        await sampler.start()
        samples = await sampler.sample([rec])
        await sampler.stop()
    assert sampler.available is False and fake.shutdown
    (gpu,) = samples
    assert (gpu.name, gpu.total, gpu.used, gpu.utilization) == ("NVIDIA GeForce RTX 4090", 24 * 1024**3, 9 * 1024**3, None)
    mine = next(p for p in gpu.processes if p.pid == os.getpid())
    assert mine.used_bytes == 7 * 1024**3 and mine.service_id == rec.id
    stranger = next(p for p in gpu.processes if p.pid == 999999)
    assert stranger.service_id is None and stranger.used_bytes is None
