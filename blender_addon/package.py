"""Build the installable addon zip: the package's modules under a top-level ``backlot/`` folder."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent
MODULE = "backlot"  # the name Blender imports the addon under
EXCLUDE = {"package.py"}


def addon_files() -> list[Path]:
    """The files that go into the zip."""
    return sorted(p for p in [*SOURCE.glob("*.py"), SOURCE / "blender_manifest.toml"] if p.name not in EXCLUDE)


def build_zip(path: str | Path) -> Path:
    """Write the addon zip to ``path`` (a folder gets ``backlot_addon.zip``) and return where it is."""
    target = Path(path).expanduser()
    if target.is_dir() or str(path).endswith(("/", os.sep)):  # "out/" names a folder, made if need be
        target = target / "backlot_addon.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in addon_files():
            zf.write(file, f"{MODULE}/{file.name}")
    tmp.replace(target)
    return target.resolve()
