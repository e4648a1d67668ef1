"""Shared fixtures: every test runs in its own BACKLOT_HOME; stand-ins run as real processes."""
from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from backlot.standins import launcher  # noqa: E402

CONFORMANCE = ROOT / "tests" / "conformance"


@pytest.fixture(autouse=True, scope="session")
def collect_on_the_main_thread() -> Iterator[None]:
    """As the window does (app/collector.py): no automatic collection, which could run on a worker thread and
    destroy a Qt object left by an earlier test there (its timers then fire into freed memory)."""
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


@pytest.fixture(autouse=True)
def collect_after_each_test() -> Iterator[None]:
    """Collect what the test left, here on the main thread; what survives is frozen, so the next collection only
    looks at what the next test makes (a full collection of this process's heap after every test cost minutes)."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def backlot_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private BACKLOT_HOME so no test touches the real user folders, and no stray BACKLOT_* vars.

    The socket API listens on a free port (two tests never fight over 8770), and an instance a test
    started in the background (``backlot submit`` with none running) is stopped afterwards.
    """
    for key in list(os.environ):
        if key.startswith("BACKLOT_") and key != "BACKLOT_GRADIO3_PYTHON":
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("BACKLOT_HOME", str(home))
    monkeypatch.setenv("BACKLOT_API_PORT", "0")
    monkeypatch.chdir(tmp_path)
    yield home
    stop_background_instance(home / "data")


def stop_background_instance(data: Path) -> None:
    """SIGTERM the instance holding ``data``'s lock, if it is not this process, and wait for it to go."""
    import signal

    import psutil

    from backlot.services.instance import InstanceLock

    from backlot.cli import remote

    pid = InstanceLock(data).holder() if data.exists() else None
    if pid is not None and pid != os.getpid() and psutil.pid_exists(pid):
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except psutil.TimeoutExpired:
            proc.kill()
    for started in list(remote._started):  # this process started it (an in-process `submit`): reap its handle
        if started.poll() is not None:
            remote._started.remove(started)


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Callable[..., launcher.StandinProcess]]:
    """Start stand-in processes for one test; all are stopped afterwards."""
    started: list[launcher.StandinProcess] = []

    def _start(kind: str, *extra: str, speed: float = 1.0, port: int = 0, timeout: float = 90.0) -> launcher.StandinProcess:
        data = tmp_path / f"{kind}-{len(started)}"
        sp = launcher.start(kind, port=port, speed=speed, data=data, extra=list(extra), timeout=timeout)
        started.append(sp)
        return sp

    yield _start
    for sp in started:
        sp.stop()


def conformance_script(name: str) -> Path:
    """Path of a conformance script (tests/conformance: checks recorded against the real backends)."""
    return CONFORMANCE / name
