"""Backlot, one package: ``backlot.services`` (the asyncio core), ``backlot.app`` and ``backlot.widgets``
(the window), ``backlot.cli`` (the command line), ``backlot.standins``, ``backlot.blender_addon`` and
``backlot/resources``.

A checkout keeps those parts in the repository's top-level folders (``services/``, ``app/``, …);
this folder links to them, and a wheel holds copies here. Where a checkout has no symbolic links
(Git on Windows without ``core.symlinks``), the package searches its parent folder instead.
"""
from __future__ import annotations

from pathlib import Path

_here = Path(__file__).parent
if not (_here / "services").is_dir() and (_here.parent / "services" / "__init__.py").is_file():
    __path__.append(str(_here.parent))
