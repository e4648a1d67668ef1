"""Layering rules from DESIGN.md, enforced with import-linter contracts in pyproject.toml."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_services_never_import_qt() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The core (services) never imports Qt or the UI layers KEPT" in done.stdout
    for front in ("The window's glue (app)", "The command line (cli)"):
        assert f"{front} enters the core by its front door only KEPT" in done.stdout


APP, CLI = "The window's glue (app) enters the core by its front door", "The command line (cli) enters the core by"


@pytest.mark.parametrize(("where", "line", "contract"), [
    ("app/console_controller.py", "import backlot.services.backends", APP),
    ("app/bridge.py", "from backlot.services.jobs.manager import JobManager", APP),
    ("cli/workflows.py", "import backlot.services.backends", CLI),
    ("cli/commands.py", "from backlot.services.connectivity.discovery import Discovery", CLI),
])
def test_a_front_that_imports_the_cores_insides_breaks_its_contract(tmp_path: Path, where: str, line: str,
                                                                    contract: str) -> None:
    """A front reaches the core only through services.application (and the composition root that builds it)."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(".venv*", ".git", "__pycache__", ".stamps", "tests"))
    with (copy / where).open("a", encoding="utf-8") as module:
        module.write("\n" + line + "\n")
    done = _lint(copy)
    assert done.returncode != 0
    broken = [ln for ln in done.stdout.splitlines() if "BROKEN" in ln]
    assert len(broken) == 1 and broken[0].startswith(contract[:60]), done.stdout


@pytest.mark.parametrize(("where", "line", "contract"), [
    ("services/sneaky.py", "import PySide6.QtCore", "The core (services) never imports Qt or the UI layers"),
    ("services/backends/comfyui/sneaky.py", "import backlot.services.jobs.manager",
     "Backends never import jobs, the API, connectivity or the composition root"),
    ("services/connectivity/sneaky.py", "import backlot.services.jobs.store",
     "Connectivity never imports jobs, the API or the composition root"),
    ("services/sneaky.py", "import backlot.cli.commands", "The core never imports the command line or the stand-ins"),
    ("services/backends/rvc/sneaky.py", "import backlot.services.backends.comfyui.adapter",
     "Backend kinds are independent of each other"),
    ("widgets/sneaky.py", "import backlot.services.jobs.manager", "Widgets are views: plain data from the core, nothing"),
])
def test_the_contracts_catch_a_forbidden_import(tmp_path: Path, where: str, line: str, contract: str) -> None:
    """The same contracts, on a copy of the tree with one forbidden import added, must break."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(".venv*", ".git", "__pycache__", ".stamps", "tests"))
    (copy / where).write_text(line + "\n")
    done = _lint(copy)
    assert done.returncode != 0
    broken = [ln for ln in done.stdout.splitlines() if "BROKEN" in ln]
    assert any(ln.startswith(contract[:60]) for ln in broken), done.stdout


def test_the_core_passes_mypy_strict(tmp_path: Path) -> None:
    """STYLE.md: type hints everywhere, mypy --strict on services/ (settings in pyproject.toml)."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), "-p", "backlot.services"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


HEAVY = {"av", "litellm", "gradio_client", "numpy", "torch", "PIL", "mcp"}


def test_no_heavy_import_runs_on_the_event_loop() -> None:
    """An import inside ``async def`` runs on the loop (``import av`` stalled it 110 ms): heavy modules load in threads."""
    found = []
    for path in (ROOT / "services").rglob("*.py"):
        source = path.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(ast.parse("\n".join(source))):
            if not isinstance(fn, ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if names and "loaded off the loop" in source[node.lineno - 1]:
                    continue  # a module a guard already loaded in a worker thread: a sys.modules lookup
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in HEAVY]
    assert found == []
