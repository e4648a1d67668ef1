"""``backlot --install-desktop-entry`` puts Backlot in the user's application menu, as the freedesktop specs say."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _exec_args(value: str) -> list[str]:
    """An Exec value split as a launcher does: string escapes, then double quotes with their backslash escapes."""
    text = value.replace("%%", "\0").replace("\\\\", "\\")
    args, cur, quoted, i, started = [], "", False, 0, False
    while i < len(text):
        c = text[i]
        if quoted and c == "\\" and i + 1 < len(text):
            cur += text[i + 1]
            i += 2
            continue
        if c == '"':
            quoted, started = not quoted, True
        elif c == " " and not quoted:
            if cur or started:
                args.append(cur)
            cur, started = "", False
        else:
            cur += c
        i += 1
    if cur or started:
        args.append(cur)
    return [a.replace("\0", "%") for a in args]


def test_the_entry_starts_this_backlot_and_validates(tmp_path: Path) -> None:
    data, home = tmp_path / "share", tmp_path / "my films $HOME"  # a home that needs quoting
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--home", str(home), "--install-desktop-entry"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    desktop = data / "applications" / "backlot.desktop"
    icon = data / "icons" / "hicolor" / "scalable" / "apps" / "backlot.svg"
    assert done.stdout.splitlines()[:2] == [str(desktop), str(icon)]
    assert icon.read_bytes() == (ROOT / "resources" / "icons" / "backlot.svg").read_bytes()
    validator = shutil.which("desktop-file-validate")
    assert validator is not None, "desktop-file-validate is missing (`make setup` installs desktop-file-utils)"
    checked = subprocess.run([validator, str(desktop)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    fields = dict(line.split("=", 1) for line in desktop.read_text().splitlines() if "=" in line)
    assert (fields["Name"], fields["Icon"], fields["Terminal"]) == ("Backlot", "backlot", "false")
    argv = _exec_args(fields["Exec"])
    assert argv == [sys.executable, str(ROOT / "main.py"), "--home", str(home.resolve())]
    again = subprocess.run([*argv, "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and again.stdout.startswith("backlot ")  # the command it names runs
