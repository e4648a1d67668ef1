"""Text helpers with no dependencies (the command line's thin client formats with them)."""
from __future__ import annotations


def one_line(text: str, limit: int = 500) -> str:
    """A backend's message as one line for tables and logs (whitespace folded, long text cut)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
