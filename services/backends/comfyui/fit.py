"""ComfyUI's side of "does this server have what the job needs": a built-in template's checkpoint may be stood in for.

A model the job does not name, in a template made for one model family, is only preferred: a server
without it may use its one checkpoint of that family instead (none or several: it cannot run the job).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backlot.services.backends.comfyui.core_nodes import is_core
from backlot.services.backends.comfyui.families import title
from backlot.services.backends.needs import Fit, Inventory, Needs, few, held, label, lacking_files

NODE_NOTE = "custom node pack not installed"
CORE_NODE_NOTE = "a core node that failed to load on that server: see its console or log"
CORE_NODES_NOTE = "a core node that failed to load on those servers: see their console or log"


def node_note(node_class: str, servers: int = 1) -> str:
    """Why a server lacks a node class: a ComfyUI core node failed to load there, else a pack is not installed."""
    if is_core(node_class):
        return CORE_NODE_NOTE if servers == 1 else CORE_NODES_NOTE
    return NODE_NOTE


@dataclass(frozen=True)
class ComfyUIInventory(Inventory):
    """A server's inventory with the model family of each checkpoint it could tell."""

    families: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # folder -> file -> family, where known


@dataclass(frozen=True)
class ComfyUINeeds(Needs):
    """What a workflow needs, with the files it would only rather have.

    ``prefer`` holds those files per folder; ``family`` names, per folder, the family a stand-in must be of.
    ``chosen`` says where each file the job uses came from, for the route: (folder, file, why).
    """

    prefer: Mapping[str, frozenset[str]] = field(default_factory=dict)
    family: Mapping[str, str] = field(default_factory=dict)
    chosen: tuple[tuple[str, str, str], ...] = ()

    def missing(self, inv: Inventory) -> list[tuple[str, str]]:
        """As for any kind, plus each preferred file the server lacks with no single file of its family instead."""
        out = lacking_files(self.models, inv)
        out += [gap for gap in lacking_files(self.prefer, inv) if self.substitute(inv, gap[0])[0] is None]
        return out + [gap for gap in super().missing(inv) if not gap[0]]

    def substitute(self, inv: Inventory, folder: str) -> tuple[str | None, list[str]]:
        """The server's one file of the family the job allows in ``folder`` (None: it has none or several), and all of them."""
        family = self.family.get(folder)
        if family is None:
            return None, []
        known = inv.families.get(folder, {}) if isinstance(inv, ComfyUIInventory) else {}
        same = sorted(n for n in inv.models.get(folder, ()) if known.get(n) == family)
        return (same[0] if len(same) == 1 else None), same

    def swaps(self, inv: Inventory) -> list[tuple[str, str, str]]:
        """(folder, preferred file it lacks, the file of the right family it will use instead)."""
        out = []
        for folder, name in lacking_files(self.prefer, inv):
            using, _ = self.substitute(inv, folder)
            if using is not None:
                out.append((folder, name, using))
        return out

    def lack(self, inv: Inventory, folder: str, name: str) -> str:
        """A missing node names the likely cause; a missing preferred file, the stand-ins it could not pick from."""
        if not folder:
            return f"{super().lack(inv, folder, name)} ({node_note(name)})"
        if self._stands_in(folder, name):
            _, same = self.substitute(inv, folder)
            has = f"it has {len(same)}: {few(same, 4)}" if same else "it has none"
            return f"no {label(folder)} {name}, nor exactly one {self._kind(folder)} to use instead ({has})"
        return super().lack(inv, folder, name)

    def fit(self, inv: Inventory | None) -> Fit:
        """What it lacks, and the files the job will use there with where each came from (a stand-in says so)."""
        swapped = {(folder, name): using for folder, name, using in self.swaps(inv)} if inv is not None else {}
        notes = []
        for folder, name, why in self.chosen:
            using = swapped.get((folder, name))
            notes.append(f"{label(folder)} {name} ({why})" if using is None else
                         f"{label(folder)} {using}: it has no {name} ({why}), so its one {self._kind(folder)}")
        return Fit(super().fit(inv).lacks, tuple(notes), len(swapped))

    def unheld(self, folder: str, name: str, inventories: Mapping[str, Inventory]) -> tuple[str, list[str]]:
        """A preferred file names its family's files on the servers instead of the closest names."""
        if not folder:
            what, notes = super().unheld(folder, name, inventories)
            return what, [node_note(name, len(inventories)), *notes]
        if not self._stands_in(folder, name):
            return super().unheld(folder, name, inventories)
        kind = self._kind(folder)
        same = sorted({n for inv in inventories.values() for n in self.substitute(inv, folder)[1]})
        have = held(folder, inventories)
        note = f"their {kind}s: {few(same)}" if same else f"they have: {few(have)}" if have else ""
        return f"{label(folder)} {name} nor exactly one {kind} to use instead", [note]

    def _stands_in(self, folder: str, name: str) -> bool:
        return folder in self.family and name in self.prefer.get(folder, ())

    def _kind(self, folder: str) -> str:
        """The family a stand-in in ``folder`` must be of, with the folder's noun ("SDXL checkpoint")."""
        return f"{title(self.family.get(folder, ''))} {label(folder)}"
