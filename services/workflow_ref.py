"""How a job names its workflow (stdlib only: the command line's thin client makes file paths absolute)."""
from __future__ import annotations


def is_path(name: str) -> bool:
    """True when ``--param workflow=`` names a file rather than a template."""
    return name.endswith(".json") or "/" in name or "\\" in name
