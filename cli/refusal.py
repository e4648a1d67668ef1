"""A command's refusal: one sentence on stderr and an exit code; with ``--json`` also ``{"error", "exit"}`` on stdout.

Commands raise ``Refusal``; ``main`` reports it, so a script reading ``--json`` output always gets a line,
success or not (stdlib only: ``backlot`` raises it before any heavy import).
"""
from __future__ import annotations

import json
import sys
from typing import TextIO


class Refusal(Exception):
    """A command that cannot do what was asked: ``message`` (one sentence) and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def report(err: Refusal, as_json: bool, out: TextIO, prefix: str = "backlot") -> int:
    """Print a refusal (stderr, and stdout as JSON with ``--json``); returns its exit code."""
    print(f"{prefix}: {err.message}", file=sys.stderr)
    if as_json:
        out.write(json.dumps({"error": err.message, "exit": err.code}) + "\n")
    return err.code
