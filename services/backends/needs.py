"""What a service has and what a job needs of it, in the terms every kind shares: files per folder, node classes.

The router only asks a job's ``Needs`` how one service fits it (``fit``) and why none does (``refusal``);
a kind with its own rules (ComfyUI's stand-in checkpoints) subclasses both in its own package.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Inventory:
    """What one service has: file names per model folder (a folder not listed is not known) and its node classes."""

    models: Mapping[str, frozenset[str]] = field(default_factory=dict)
    nodes: frozenset[str] | None = None  # None: not known
    at: float = 0.0


@dataclass(frozen=True)
class Fit:
    """How one service suits a job: what it lacks, as phrases (none: it can run it), and notes for the route.

    ``substitutes`` counts things it would use in place of what the job asked for: fewer ranks first.
    """

    lacks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    substitutes: int = 0


@dataclass(frozen=True)
class Needs:
    """What a job needs on a service: files per model folder and node classes."""

    models: Mapping[str, frozenset[str]] = field(default_factory=dict)
    nodes: frozenset[str] = frozenset()

    def missing(self, inv: Inventory) -> list[tuple[str, str]]:
        """(folder, file) and ("", node class) the service is known to lack; unknown folders are not counted."""
        return lacking_files(self.models, inv) + lacking_nodes(self.nodes, inv)

    def lack(self, inv: Inventory, folder: str, name: str) -> str:
        """One thing ``missing`` found, as said of that service."""
        return f"no {label(folder)} {name}" if folder else f"lacks node {name}"

    def fit(self, inv: Inventory | None) -> Fit:
        """How the service with ``inv`` suits the job (None: what it has is not known yet, so nothing is held against it)."""
        if inv is None:
            return Fit()
        return Fit(tuple(self.lack(inv, folder, name) for folder, name in self.missing(inv)))

    def unheld(self, folder: str, name: str, inventories: Mapping[str, Inventory]) -> tuple[str, list[str]]:
        """A thing no service has, in words, and notes on what they have instead (the closest names)."""
        have = held(folder, inventories)
        what = f"{label(folder)} {name}" if folder else f"node {name}"
        if close := difflib.get_close_matches(name, have, n=3, cutoff=0.4 if folder else 0.75):
            return what, [f"closest: {', '.join(close)}"]
        return what, [f"they have: {few(have)}"] if have and folder else []

    def refusal(self, inventories: Mapping[str, Inventory]) -> str:
        """One sentence naming what no service has and the closest names they do have."""
        parts: list[str] = []
        seen: set[tuple[str, str]] = set()
        gaps = {sid: self.missing(inv) for sid, inv in inventories.items()}
        for found in gaps.values():
            for gap in found:
                if gap in seen or any(gap not in other for other in gaps.values()):
                    continue
                seen.add(gap)
                what, notes = self.unheld(*gap, inventories)
                notes = [n for n in notes if n]
                parts.append(f"no server has the {what}" + (f" ({'; '.join(notes)})" if notes else ""))
        return "; ".join(parts)


def label(folder: str) -> str:
    """A models folder as a noun: "checkpoints" -> "checkpoint", "text_encoders" -> "text encoder".

    A loader's own choices (``Class.input``, for a folder known by no name) read "file for Class.input".
    """
    if "." in folder:
        return f"file for {folder}"
    word = folder.replace("_", " ")
    return word.removesuffix("s")


def lacking_files(models: Mapping[str, frozenset[str]], inv: Inventory) -> list[tuple[str, str]]:
    """(folder, file) of ``models`` the service is known to lack, sorted; folders it does not list are not counted."""
    return [(folder, name) for folder, names in sorted(models.items()) if folder in inv.models
            for name in sorted(names) if name not in inv.models[folder]]


def lacking_nodes(nodes: frozenset[str], inv: Inventory) -> list[tuple[str, str]]:
    """("", node class) of ``nodes`` the service is known to lack, sorted."""
    return [] if inv.nodes is None else [("", cls) for cls in sorted(nodes) if cls not in inv.nodes]


def held(folder: str, inventories: Mapping[str, Inventory]) -> list[str]:
    """Every file the services have in ``folder`` ("": every node class), sorted."""
    return sorted({n for inv in inventories.values() for n in (inv.models.get(folder, ()) if folder else (inv.nodes or ()))})


def few(names: list[str], n: int = 5) -> str:
    """The first ``n`` names, and "…" when there are more."""
    return ", ".join(names[:n]) + (" …" if len(names) > n else "")
