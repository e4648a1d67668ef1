"""Layering rules from DESIGN.md, enforced with import-linter contracts in pyproject.toml."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_services_never_import_qt() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The core (services) never imports Qt or the UI layers KEPT" in done.stdout


def test_the_contract_catches_a_qt_import(tmp_path: Path) -> None:
    """The same contracts, on a copy of the tree with one forbidden import added, must break."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv*", ".git", "__pycache__", ".stamps", "tests"))
    (copy / "services" / "sneaky.py").write_text("import PySide6.QtCore\n")
    done = _lint(copy)
    assert done.returncode != 0
    assert "The core (services) never imports Qt or the UI layers BROKEN" in done.stdout


def test_the_core_passes_mypy_strict(tmp_path: Path) -> None:
    """STYLE.md: type hints everywhere, mypy --strict on services/ (settings in pyproject.toml)."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), "services"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
