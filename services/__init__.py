"""Backlot's asyncio core. Nothing in this package imports Qt (an import-linter contract checks it)."""

__version__ = "0.1.0"
