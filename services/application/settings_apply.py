"""Settings saved while the core runs: what applies at once, and what only a restart applies (by name).

``apply`` changes the running core's Settings in place (discovery, health and jobs read them at each use) and
says which URLs are new, which are gone and whether discovery should run again; the application service then
probes the new URLs and forgets the services of the removed ones.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backlot.services.config import Settings
from backlot.services.launch.entry import LaunchEntry, StartWhen

# Settings a running core reads at each use (or the core retunes at once): they apply when saved.
LIVE = ("hosts", "urls", "ports", "discovery_budget", "discovery_interval", "connect_timeout", "health_interval",
        "health_interval_visible", "health_timeout", "output_dir")
HEALTH = ("health_interval", "health_interval_visible", "health_timeout", "discovery_interval")
# What only a restart applies, with the name the user knows it by.
RESTART: dict[str, str] = {
    "api_host": "the API interface",
    "api_port": "the API port",
    "data_dir": "the data folder",
    "llm_keys": "the LLM keys",
    "llm_models": "the LLM models",
    "log_level": "the log level",
    "task_backends": "the backends per task",
    "job_concurrency": "the jobs per backend",
}


@dataclass(frozen=True)
class SettingsApplied:
    """What a save changed in the running core."""

    applied: tuple[str, ...] = ()  # setting names now in effect
    restart: tuple[str, ...] = ()  # names ("the API port") that take effect at the next start
    added_urls: tuple[str, ...] = ()  # service URLs to probe now
    removed_urls: tuple[str, ...] = ()  # service URLs no longer watched
    rediscover: bool = False  # hosts or ports changed: a discovery round finds what they add
    retune: bool = False  # health or discovery timing changed: the monitors and the loop take it now
    relaunch: bool = False  # the launch entries changed: the launcher follows them now
    launch_started: tuple[str, ...] = ()  # new entries that start with Backlot: started now, not at the next start

    def sentence(self, where: Path | str) -> str:
        """``Saved to …; applied now.`` or ``…; restart Backlot to apply the API port (the rest applies now).``"""
        if not self.restart:
            return f"Saved to {where}; applied now." + (f" Probing {', '.join(self.added_urls)}…"
                                                         if self.added_urls else "")
        names = _join(self.restart)
        rest = " (the rest applies now)" if self.applied else ""
        return f"Saved to {where}. Restart Backlot to apply {names}{rest}."


def _join(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


def launch_entries(current: Mapping[str, LaunchEntry], changed: Mapping[str, Any]) -> dict[str, LaunchEntry]:
    """``current`` with ``changed`` applied: ``{name: entry (model or its plain form), or None to remove it}``.

    ValueError with one sentence naming the entry when one is not a valid launch entry."""
    entries = dict(current)
    for name, value in changed.items():
        if value is None:
            entries.pop(name, None)
            continue
        try:
            entries[name] = value if isinstance(value, LaunchEntry) else LaunchEntry.model_validate(value)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"launch entry {name!r}: {where + ': ' if where else ''}{first['msg']}") from None
    return entries


def apply(settings: Settings, changes: Mapping[str, Any]) -> SettingsApplied:
    """Put ``changes`` (as the settings dialog sends them: only what changed) into ``settings``."""
    applied: list[str] = []
    restart: list[str] = []
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    for key, value in changes.items():
        if key == "launch":  # the launcher follows at once: new entries appear, removed ones stop
            before = settings.launch
            settings.launch = launch_entries(before, value)
            started = tuple(n for n, e in settings.launch.items()
                            if n not in before and e.start is StartWhen.WITH_BACKLOT)
            applied.append(key)
        elif key in RESTART:
            if key == "llm_keys" and not value:
                continue
            restart.append(RESTART[key])
        elif key == "urls":
            old = {_norm(u) for u in settings.urls}
            new = [str(u) for u in value]
            added = tuple(u for u in new if _norm(u) not in old)
            kept = {_norm(u) for u in new}
            removed = tuple(u for u in settings.urls if _norm(u) not in kept)
            settings.urls = [u for u in new if u not in added]  # add_service puts each new one in once probed
            applied.append(key)
        elif key == "ports":
            ports = dict(settings.ports)
            for kind, listed in dict(value).items():
                if listed:
                    ports[kind] = [int(p) for p in listed]
                else:
                    ports.pop(kind, None)
            settings.ports = ports
            applied.append(key)
        elif key == "output_dir":
            settings.output_dir = Path(value).expanduser() if value else None
            applied.append(key)
        elif key in LIVE:
            setattr(settings, key, list(value) if isinstance(value, list | tuple) else float(value))
            applied.append(key)
        else:
            restart.append(key.replace("_", " "))
    return SettingsApplied(tuple(applied), tuple(restart), added, removed,
                           rediscover=any(k in changes for k in ("hosts", "ports")),
                           retune=any(k in changes for k in HEALTH), relaunch="launch" in changes,
                           launch_started=started)

