"""The Blender releases the addon is tested in: Debian's ``blender`` (3.4) and PyPI's ``bpy`` module builds.

``make test`` builds one venv per bpy release it names in BACKLOT_BPY_VERSIONS (``.venv-bpy-X.Y.Z``)
and sets that variable, so a release it names but cannot run fails its tests instead of skipping
them. Run by hand without it, the suite tests whichever releases are installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BlenderHost:
    """One Blender to run a test script in."""

    version: str  # "3.4", "4.2.23", ...
    executable: str  # the blender binary, or the venv's python for a bpy module build
    module: bool  # True: PyPI's bpy, run as ``python script.py``
    sound: bool  # False where the build has no Audaspace (PyPI's bpy 4.2)

    @property
    def id(self) -> str:
        """The name a test's id and failure messages carry."""
        return f"blender-{self.version}"

    @property
    def major_minor(self) -> tuple[int, int]:
        """(4, 2) for "4.2.23"."""
        major, minor, *_ = (int(p) for p in self.version.split("."))
        return major, minor

    @property
    def extensions(self) -> bool:
        """True from 4.2 on: the zip also installs through Extensions' "Install from Disk"."""
        return self.major_minor >= (4, 2)

    def command(self, script: Path, windowed: bool = False) -> list[str]:
        """The command that runs ``script`` in this Blender (windowed: the binary under Xvfb)."""
        if self.module:
            return [self.executable, str(script)]
        cmd = [self.executable, "--factory-startup", "--python-exit-code", "1", "--python", str(script)]
        if windowed:
            xvfb = shutil.which("xvfb-run")
            assert xvfb is not None, "xvfb-run is not installed"
            return [xvfb, "-a", "-s", "-screen 0 1280x1024x24", *cmd]
        return [cmd[0], "-b", *cmd[1:]]


def _debian() -> BlenderHost | None:
    binary = shutil.which("blender")
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    words = out.split()
    version = words[1] if len(words) > 1 and words[0] == "Blender" else "unknown"
    return BlenderHost(".".join(version.split(".")[:2]), binary, module=False, sound=True)


def _bpy(version: str) -> BlenderHost:
    # bpy 4.2's module build has no Audaspace; 4.5 and later do (checked with bpy.app.build_options.audaspace)
    return BlenderHost(version, str(ROOT / f".venv-bpy-{version}" / "bin" / "python"), module=True,
                       sound=tuple(int(p) for p in version.split(".")[:2]) >= (4, 5))


def required_bpy() -> list[str]:
    """The bpy releases ``make test`` installed and expects to be tested."""
    return os.environ.get("BACKLOT_BPY_VERSIONS", "").split()


def hosts() -> list[BlenderHost]:
    """Every Blender to test in, oldest first."""
    found = [h for h in [_debian()] if h is not None]
    wanted = required_bpy() or sorted(p.name.removeprefix(".venv-bpy-") for p in ROOT.glob(".venv-bpy-*")
                                      if (p / "bin" / "python").exists())
    return found + [_bpy(v) for v in wanted]
