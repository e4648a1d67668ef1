"""Launch entries written to config.toml from the command line: ``add-backend FOLDER`` and ``restart --mcp``.

``add-backend`` is "Add from a folder": the entry comes from the running instance (``launch.preset``) when one
runs, else from the same preset code here. config.toml is edited with the window's writer, so the user's
comments and layout stay.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from backlot.app.config_writer import ConfigWriteError, write_config
from backlot.cli import remote
from backlot.cli.client_commands import reports_errors
from backlot.cli.refusal import Refusal
from backlot.cli.remote import Home
from backlot.services.config import ConfigError, Settings
from backlot.services.launch import presets
from backlot.services.launch.entry import LaunchEntry, StartWhen, check_name

TRIES = 5  # a suggested port that another entry in config.toml already names is asked for again


@reports_errors
def add(home: Home, folder: Path, name: str | None, kind: str | None, with_backlot: bool, out: TextIO) -> int:
    """Write the entry for ``folder`` to config.toml and say how to use it."""
    try:
        settings = home.settings()
    except ConfigError as err:
        raise Refusal(f"configuration error: {err}", 2) from err
    taken = set(settings.launch)
    if name is not None:
        try:
            check_name(name)
        except ValueError as err:
            raise Refusal(str(err), 2) from err
        if name in taken:
            raise Refusal(f"a launch entry named {name!r} is already in {settings.paths.config_file}; "
                          "choose another --name", 2)
    inst = remote.find(home)
    suggested, entry, note = _preset(settings, inst, folder, kind)
    name = name or _free_name(suggested, taken)
    if with_backlot:
        entry = entry.model_copy(update={"start": StartWhen.WITH_BACKLOT})
    values = entry.model_dump(mode="json", exclude_defaults=True)
    values["start"] = entry.start.value  # shown even when it is the default: it is the choice people look for
    path = settings.paths.config_file
    try:
        write_config(path, {"launch": {name: values}})
    except ConfigWriteError as err:
        raise Refusal(str(err), 2) from err
    out.write(f"added [launch.{name}] to {path}:\n"
              f"  {entry.kind} on port {entry.port}, {'starts with Backlot' if with_backlot else 'started on demand'}\n"
              f"  command: {entry.shown_command()}\n"
              f"  in: {entry.cwd or folder}\n")
    if note:
        out.write(f"note: {note}\n")
    if inst is not None:  # the running Backlot knows it from now on (and starts it, if it starts with Backlot)
        with inst.client() as client:
            client.call("launch.add", {"name": name, "entry": entry.model_dump(mode="json"), "start": with_backlot})
        out.write(f"Backlot (pid {inst.pid}) " + (f"is starting it: `backlot logs {name} -f` follows its console\n"
                                                  if with_backlot else f"knows it: `backlot start {name}` starts it\n"))
    elif not with_backlot:
        out.write(f"`backlot start {name}` starts it once Backlot runs\n")
    return 0


def keep_mcp(home: Home, names: list[str], out: TextIO) -> None:
    """After ``restart --mcp``: the Wan2GP entries' MCP command saved in config.toml, as the instance now runs them."""
    settings = home.settings()
    fixed = {n: presets.with_mcp(settings.launch[n]) for n in names if n in settings.launch}
    changed = {n: e.model_dump(mode="json", exclude_defaults=True) | {"start": e.start.value}
               for n, e in fixed.items() if e != settings.launch[n]}
    if not changed:
        return
    try:
        write_config(settings.paths.config_file, {"launch": changed})
    except ConfigWriteError as err:
        raise Refusal(f"{', '.join(changed)} now {'runs' if len(changed) == 1 else 'run'} with the MCP server, "
                      f"but {err}", 2) from err
    out.write(f"saved in {settings.paths.config_file}: {', '.join(changed)} "
              f"{'starts' if len(changed) == 1 else 'start'} with the MCP server from now on\n")


def _preset(settings: Settings, inst: remote.Instance | None, folder: Path,
            kind: str | None) -> tuple[str, LaunchEntry, str]:
    """The suggested name, entry and note: the instance's (it knows its entries) or made here."""
    used = {e.port for e in settings.launch.values()}
    for _ in range(TRIES):
        if inst is not None:
            with inst.client() as client:
                got: dict[str, Any] = client.call("launch.preset", {"folder": str(folder), "kind": kind})
            name, entry, note = str(got["name"]), LaunchEntry.model_validate(got["entry"]), str(got["note"])
        else:
            try:
                preset = presets.from_folder(folder, None, kind, frozenset(settings.launch))
            except presets.PresetError as err:
                raise Refusal(str(err), 2) from err
            name, entry, note = preset.name, preset.entry, preset.note
        if entry.port not in used:
            return name, entry, note
    raise Refusal(f"no free port for {folder} that no launch entry in config.toml names; set one by hand", 2)


def _free_name(name: str, taken: set[str]) -> str:
    base, n = name, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name
