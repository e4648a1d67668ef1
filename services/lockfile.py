"""Who holds an instance lock file (stdlib only: the command line's thin client reads it without the core)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_holder(path: Path) -> int | None:
    """The pid written in a held ``flock`` lock file, -1 when it holds no pid, or None when nobody holds it."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raw = path.read_text(encoding="utf-8").strip()
        return int(raw) if raw.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
