"""Real ComfyUI workflows for tests, fetched (never committed): the official templates from PyPI, ComfyUI's SDXL graph."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

TEMPLATES = "comfyui-workflow-templates-json==0.1.123"  # pinned: the tests count and read its files
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backlot-tests"
# ComfyUI's tests/inference/graphs/default_graph_sdxl1_0.json ships in no package; a checkout is used where there is one.
SDXL_GRAPH_ENV = "COMFYUI_SDXL_API_GRAPH"
SDXL_GRAPH_PATHS = (Path("/work/scratch/comfyui/src/tests/inference/graphs/default_graph_sdxl1_0.json"),)


def _unavailable(reason: str) -> None:
    """Fail in CI (it reaches PyPI, so a missing download is a broken build); skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def download_templates(cache: Path = CACHE) -> Path:
    """The templates folder of the wheel, downloaded with pip once and unpacked under ``cache``."""
    folder = cache / TEMPLATES.replace("==", "-")
    done = folder / "templates"
    if done.is_dir():
        return done
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", TEMPLATES, "--no-deps", "--quiet", "--disable-pip-version-check"]
        run = subprocess.run([*pip, "-d", tmp], check=False, capture_output=True, text=True, timeout=300)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            said = (run.stderr.strip().splitlines() or ["no wheel came"])[-1]
            _unavailable(f"could not download {TEMPLATES} from PyPI: {said}")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(unpacked)
        found = [p for p in unpacked.glob("*/templates") if p.is_dir()]
        if not found:
            pytest.fail(f"{wheels[0].name} has no templates folder")
        folder.mkdir(parents=True, exist_ok=True)
        staged = folder / f"templates.{os.getpid()}"
        found[0].rename(staged)
        try:
            staged.rename(done)  # atomic, so a half-written cache is never read
        except OSError:
            if not done.is_dir():  # else another run got there first
                raise
    return done


@pytest.fixture(scope="session")
def comfyui_templates() -> Path:
    """The official UI-format workflow templates (``templates/*.json``) from the PyPI package."""
    return download_templates()


@pytest.fixture(scope="session")
def sdxl_api_graph() -> Path:
    """ComfyUI's own API-format SDXL graph, from $COMFYUI_SDXL_API_GRAPH or a ComfyUI checkout; skipped without one."""
    paths = [Path(os.environ[SDXL_GRAPH_ENV])] if os.environ.get(SDXL_GRAPH_ENV) else list(SDXL_GRAPH_PATHS)
    for path in paths:
        if path.is_file():
            return path
    pytest.skip(f"ComfyUI's default_graph_sdxl1_0.json is not here (set {SDXL_GRAPH_ENV} to its path)")
    raise AssertionError  # unreachable: skip raises
