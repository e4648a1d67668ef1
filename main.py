"""Backlot's entry point: the command line lives in ``cli/`` (``cli.main``); this file only hands over."""
from __future__ import annotations

import sys

from backlot.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
