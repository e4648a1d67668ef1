"""The ``workflows`` command's arguments (stdlib only: ``backlot`` parses its arguments before any heavy import)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from backlot.cli.main import Commands


def add_parser(sub: Commands) -> argparse.ArgumentParser:
    """The ``workflows`` command and its subcommands (returns its parser)."""
    w = sub.add_parser("workflows", help="list, show and import ComfyUI workflows")
    wsub = w.add_subparsers(dest="workflows_command", metavar="ACTION", required=True)
    ls = wsub.add_parser("list", help="built-in and your workflows")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    sh = wsub.add_parser("show", help="one workflow: task, bindings, models it needs, where it came from")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    im = wsub.add_parser("import", help="copy a workflow file into your workflows with inferred bindings")
    im.add_argument("file", type=Path)
    im.add_argument("--name", help="the name jobs use (default: the file's name)")
    im.add_argument("--task", help="the task it serves (default: guessed from its outputs and inputs)")
    im.add_argument("--force", action="store_true", help="replace a workflow of the same name")
    im.add_argument("--json", action="store_true", help="machine-readable output")
    im.add_argument("--server", metavar="URL", help="ComfyUI whose node list converts a UI-format file "
                    "(default: the first one discovery finds)")
    return w
