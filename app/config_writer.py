"""Writes changes into the user's ``config.toml`` with tomlkit, so their comments and layout survive, atomically.

Blocking (file I/O): call it through ``asyncio.to_thread``. Values are checked by the Settings model before the
file is replaced, so a save can never leave a configuration Backlot refuses at its next start.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from backlot.services.config import Settings
from backlot.services.launch.entry import SECRET_KEY, LaunchEntry

if TYPE_CHECKING:
    from tomlkit.items import Table
# tomlkit itself loads at the first write (the window imports this module at start-up; nobody saves then)

TABLES = ("ports", "llm_keys", "launch")  # settings kept as a [table] with one key per kind, provider or entry
SECRET_TABLES = ("llm_keys",)


class ConfigWriteError(Exception):
    """The file could not be read, checked or written; the message is one sentence (never a secret)."""


def apply_changes(text: str, changes: Mapping[str, Any]) -> str:
    """``text`` (TOML) with ``changes`` applied: None removes a key, tables are changed key by key."""
    import tomlkit

    doc = tomlkit.parse(text)
    for key, value in changes.items():
        if key in TABLES:
            _apply_table(doc, key, value)
        elif value is None:
            doc.pop(key, None)
        else:
            doc[key] = str(value) if isinstance(value, Path) else value
    return tomlkit.dumps(doc)


def _apply_table(doc: Any, key: str, values: Mapping[str, Any]) -> None:
    import tomlkit
    from tomlkit.items import Table

    table = doc.get(key)
    if table is None:
        table = tomlkit.table(is_super_table=key == "launch")  # [launch.comfyui], no empty [launch] above it
        doc[key] = table
    for name, value in values.items():
        if value is None or value == []:
            table.pop(name, None)
        elif isinstance(value, Mapping):  # a launch entry: its own [launch.NAME] table, its env inline
            old = table.get(name)
            if isinstance(old, Table):
                _update_entry_table(old, value)  # key by key: the user's comments inside it stay
            else:
                table[name] = _entry_table(value)
        else:
            table[name] = value
    if isinstance(table, Table) and not table:
        doc.pop(key)


def launch_values(entry: LaunchEntry) -> dict[str, Any]:
    """A launch entry as its ``[launch.NAME]`` table holds it: what differs from the defaults, and when it starts
    (shown even when it is the default: it is the choice people look for)."""
    return entry.model_dump(mode="json", exclude_defaults=True) | {"start": entry.start.value}


def _entry_table(values: Mapping[str, Any]) -> Table:
    import tomlkit

    table = tomlkit.table()
    _update_entry_table(table, values)
    return table


def _update_entry_table(table: Table, values: Mapping[str, Any]) -> None:
    """``table`` holding exactly ``values``: keys it no longer has go, changed ones are replaced, the rest (and
    the comments between them) stay as they were."""
    import tomlkit

    for name in [k for k in table if k not in values]:
        table.pop(name)
    for name, value in values.items():
        if isinstance(value, Mapping):
            inline = tomlkit.inline_table()
            inline.update(value)
            value = inline
        elif isinstance(value, Path):
            value = str(value)
        if table.get(name) != value:
            table[name] = value


def _has_secret(doc: Any) -> bool:
    """Whether the file holds a secret: LLM keys, or a launch entry's environment variable named like a key."""
    if any(t in doc for t in SECRET_TABLES):
        return True
    launch = doc.get("launch") or {}
    return any(SECRET_KEY.search(str(k)) for entry in launch.values() if isinstance(entry, Mapping)
               for k in (entry.get("env") or {}))


def check(text: str) -> None:
    """ConfigWriteError naming the setting when the new file would not load."""
    import tomllib

    try:
        Settings.model_validate(tomllib.loads(text))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        got = "" if where.startswith("llm_keys") else f" (got {first.get('input')!r})"
        raise ConfigWriteError(f"not saved: setting '{where}' {first['msg'][0].lower()}{first['msg'][1:]}{got}") from None


def write_config(path: Path, changes: Mapping[str, Any]) -> None:
    """Apply ``changes`` to the TOML file at ``path`` (created if missing): checked, written to a temp file, replaced."""
    import tomlkit

    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as err:
        raise ConfigWriteError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        new = apply_changes(text, changes)
    except tomlkit.exceptions.TOMLKitError as err:
        raise ConfigWriteError(f"{path} is not valid TOML, so it was left as it is: {err}") from err
    check(new)
    secret = _has_secret(tomlkit.parse(new))
    mode = 0o600 if secret or not path.exists() else path.stat().st_mode & 0o777
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ConfigWriteError(f"cannot write in {path.parent}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # readers see the old file or the new one, never half of it
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigWriteError(f"cannot write {path}: {err.strerror or err}") from err
