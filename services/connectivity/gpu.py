"""NVML sampling of local GPUs, per-process memory mapped to the backend listening on a service's port.

Every NVML call blocks, so it runs in a worker thread. No NVIDIA library means "no local GPU": a
normal state, reported as such, never an error.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from backlot.services.models import GpuProcess, GpuSample, ServiceRecord

log = logging.getLogger(__name__)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def _text(value: Any) -> str:
    return str(value.decode()) if isinstance(value, bytes) else str(value)


class GpuSampler:
    """Reads local NVIDIA GPUs through NVML (``nvidia-ml-py``); ``available`` is False without one."""

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self.available = False
        self.reason = "not started"
        self._handles: list[Any] = []

    def _start_blocking(self) -> None:
        try:
            nvml: Any = self._nvml
            if nvml is None:
                import pynvml

                nvml = pynvml
            nvml.nvmlInit()
            self._nvml = nvml
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except ImportError:
            self.available, self.reason = False, "no local GPU (nvidia-ml-py is not installed)"
            return
        except Exception as err:  # pynvml.NVMLError_* (library missing, driver not loaded): "no GPU"
            self.available, self.reason = False, f"no local GPU ({err or type(err).__name__})"
            return
        self.available = bool(self._handles)
        self.reason = f"{len(self._handles)} local GPU(s)" if self._handles else "no local GPU (NVML sees none)"

    async def start(self) -> None:
        """Initialise NVML off the loop."""
        await asyncio.to_thread(self._start_blocking)
        log.debug("GPU: %s", self.reason)  # the instance says it once in its start-up line

    def _sample_blocking(self, services: list[ServiceRecord]) -> tuple[GpuSample, ...]:
        nvml: Any = self._nvml
        owners = _port_owners(services)
        out = []
        for index, h in enumerate(self._handles):
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util: int | None = int(nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:  # not supported on every board (and N/A under WDDM)
                util = None
            procs = []
            seen: set[int] = set()
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    running = getattr(nvml, getter)(h)
                except Exception:
                    continue
                for p in running:
                    if p.pid in seen:
                        continue
                    seen.add(p.pid)
                    used = getattr(p, "usedGpuMemory", None)
                    used = int(used) if isinstance(used, int) and used >= 0 else None  # None = N/A (WDDM)
                    procs.append(GpuProcess(p.pid, used, _proc_name(p.pid), _owner(p.pid, owners)))
            out.append(GpuSample(index, _text(nvml.nvmlDeviceGetName(h)), int(mem.total), int(mem.used), util,
                                 tuple(procs), time.time()))
        return tuple(out)

    async def sample(self, services: Iterable[ServiceRecord] = ()) -> tuple[GpuSample, ...]:
        """Read every local GPU (empty when there is none)."""
        if not self.available:
            return ()
        return await asyncio.to_thread(self._sample_blocking, list(services))

    async def stop(self) -> None:
        """Shut NVML down."""
        if self.available and self._nvml is not None:
            await asyncio.to_thread(self._nvml.nvmlShutdown)
            self.available = False


def _proc_name(pid: int) -> str:
    import psutil  # the helpers run on the sampling thread: psutil loads there, with the first GPU sample

    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return ""


def _port_owners(services: list[ServiceRecord]) -> dict[int, str]:
    """pid → service id for local services, by which process listens on the service's port."""
    local = {s.port: s.id for s in services if s.host in LOCAL_HOSTS}
    if not local:
        return {}
    import psutil

    owners: dict[int, str] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return {}
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in local and c.pid:
            owners[c.pid] = local[c.laddr.port]
    return owners


def _owner(pid: int, owners: dict[int, str]) -> str | None:
    """The service of ``pid`` or of its nearest ancestor (a GPU worker is often a child of the server)."""
    import psutil

    try:
        proc: psutil.Process | None = psutil.Process(pid)
        while proc is not None:
            if proc.pid in owners:
                return owners[proc.pid]
            proc = proc.parent()
    except (psutil.Error, OSError):
        return None
    return None
