"""``backlot --install-desktop-entry``: Backlot in the system's application menu (freedesktop ``.desktop`` + icon).

Writes ``$XDG_DATA_HOME/applications/backlot.desktop`` (default ``~/.local/share``) that starts this very
Backlot (this environment's ``backlot`` script, this Python with the checkout's ``main.py``, or ``python -m backlot``), and its icon as
``icons/hicolor/scalable/apps/backlot.svg``. Stdlib only; nothing outside the user's data folder is touched.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

ICON = Path(__file__).resolve().parent.parent / "resources" / "icons" / "backlot.svg"
CHECKOUT_MAIN = Path(__file__).resolve().parent.parent / "main.py"  # absent from an installed wheel


def data_home() -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share``."""
    return Path(os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share")


def launch_command(home: str | None = None) -> list[str]:
    """The command that starts this Backlot's window (with ``--home`` when one was given)."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "backlot" and script.is_file():
        cmd = [str(script)]
    elif CHECKOUT_MAIN.is_file():  # run as ``python main.py`` (or from a test): the checkout's entry point
        cmd = [sys.executable, str(CHECKOUT_MAIN)]
    else:  # an installed package run as ``python -m backlot``
        cmd = [sys.executable, "-m", "backlot"]
    if home:
        cmd += ["--home", str(Path(home).expanduser().resolve())]
    return cmd


RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')  # characters that make an Exec argument need quotes


def _quote(arg: str) -> str:
    """One Exec argument: double-quoted when it holds a reserved character, with the string escapes on top."""
    if RESERVED & set(arg):
        arg = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    return arg.replace("\\", "\\\\").replace("%", "%%")


def entry(command: list[str]) -> str:
    """The ``.desktop`` file's text (freedesktop Desktop Entry Specification)."""
    exec_line = " ".join(_quote(part) for part in command)
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        "Name=Backlot",
        "GenericName=AI film-making control center",
        "Comment=Find, watch and drive ComfyUI, Wan2GP, RVC, AudioLDM and LLMs for Blender",
        f"Exec={exec_line}",
        "Icon=backlot",
        "Terminal=false",
        "Categories=AudioVideo;Video;",
        "Keywords=ComfyUI;Wan2GP;Blender;AI;video;",
        "StartupNotify=true",
        "",
    ])


def install(out: TextIO, home: str | None = None) -> int:
    """Write the entry and the icon; print where they went."""
    base = data_home()
    apps, icons = base / "applications", base / "icons" / "hicolor" / "scalable" / "apps"
    apps.mkdir(parents=True, exist_ok=True)
    icons.mkdir(parents=True, exist_ok=True)
    (icons / "backlot.svg").write_bytes(ICON.read_bytes())
    path = apps / "backlot.desktop"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(entry(launch_command(home)), encoding="utf-8")
    tmp.replace(path)
    out.write(f"{path}\n{icons / 'backlot.svg'}\nBacklot is in your application menu (log out and in if it does "
              "not show at once).\n")
    return 0
