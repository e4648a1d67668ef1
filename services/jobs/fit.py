"""Does a service have what a job needs? Pure checks of a kind's ``Needs`` against a cached ``Inventory``."""
from __future__ import annotations

import difflib
from collections.abc import Mapping

from services.backends.spec import Inventory, Needs


def label(folder: str) -> str:
    """A models folder as a noun: "checkpoints" -> "checkpoint", "text_encoders" -> "text encoder"."""
    word = folder.replace("_", " ")
    return word.removesuffix("s")


def missing(needs: Needs, inv: Inventory) -> list[tuple[str, str]]:
    """(folder, file) and ("", node class) the service is known to lack; unknown folders are not counted."""
    out = [(folder, name) for folder, names in sorted(needs.models.items()) if folder in inv.models
           for name in sorted(names) if name not in inv.models[folder]]
    if inv.nodes is not None:
        out += [("", cls) for cls in sorted(needs.nodes) if cls not in inv.nodes]
    return out


def lacks_preferred(needs: Needs, inv: Inventory) -> list[tuple[str, str]]:
    """Preferred files the service is known to lack."""
    return [(folder, name) for folder, names in sorted(needs.prefer.items()) if folder in inv.models
            for name in sorted(names) if name not in inv.models[folder]]


def _say(needs: Needs, folder: str, name: str) -> str:
    if folder:
        return f"no {label(folder)} {name}"
    return f"lacks node {name}" + (f" ({needs.node_note})" if needs.node_note else "")


def shortfall(needs: Needs, inv: Inventory) -> str | None:
    """Why the service cannot run the job ("no checkpoint x; lacks node Y (…)"), or None when nothing is known missing."""
    gaps = missing(needs, inv)
    return "; ".join(_say(needs, f, n) for f, n in gaps) or None


def refusal(needs: Needs, inventories: Mapping[str, Inventory]) -> str:
    """One sentence naming what no service has and the closest names they do have."""
    parts: list[str] = []
    seen: set[tuple[str, str]] = set()
    for inv in inventories.values():
        for folder, name in missing(needs, inv):
            if (folder, name) in seen or any((folder, name) not in missing(needs, other)
                                             for other in inventories.values()):
                continue
            seen.add((folder, name))
            have = sorted({n for other in inventories.values() for n in
                           (other.models.get(folder, ()) if folder else (other.nodes or ()))})
            close = difflib.get_close_matches(name, have, n=3, cutoff=0.4 if folder else 0.75)
            what = f"{label(folder)} {name}" if folder else f"node {name}"
            notes = [needs.node_note] if not folder and needs.node_note else []
            if close:
                notes.append(f"closest: {', '.join(close)}")
            elif have and folder:
                notes.append(f"they have: {', '.join(have[:5])}{' …' if len(have) > 5 else ''}")
            hint = f" ({'; '.join(notes)})" if notes else ""
            parts.append(f"no server has the {what}{hint}")
    return "; ".join(parts)
