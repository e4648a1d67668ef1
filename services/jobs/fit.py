"""Does a service have what a job needs? Pure checks of a kind's ``Needs`` against a cached ``Inventory``."""
from __future__ import annotations

import difflib
from collections.abc import Mapping

from backlot.services.backends.spec import Inventory, Needs


def label(folder: str) -> str:
    """A models folder as a noun: "checkpoints" -> "checkpoint", "text_encoders" -> "text encoder".

    A loader's own choices (``Class.input``, for a folder known by no name) read "file for Class.input".
    """
    if "." in folder:
        return f"file for {folder}"
    word = folder.replace("_", " ")
    return word.removesuffix("s")


def missing(needs: Needs, inv: Inventory) -> list[tuple[str, str]]:
    """(folder, file) and ("", node class) the service is known to lack; unknown folders are not counted.

    A preferred file counts only when the service has no single file of the right family instead.
    """
    out = [(folder, name) for folder, names in sorted(needs.models.items()) if folder in inv.models
           for name in sorted(names) if name not in inv.models[folder]]
    out += [(folder, name) for folder, name, _ in _lacking_preferred(needs, inv)
            if substitute(needs, inv, folder)[0] is None]
    if inv.nodes is not None:
        out += [("", cls) for cls in sorted(needs.nodes) if cls not in inv.nodes]
    return out


def substitute(needs: Needs, inv: Inventory, folder: str) -> tuple[str | None, list[str]]:
    """The service's one file of the family the job allows in ``folder`` (None: it has none or several), and all of them."""
    family = needs.family.get(folder)
    if family is None:
        return None, []
    known = inv.families.get(folder, {})
    same = sorted(n for n in inv.models.get(folder, ()) if known.get(n) == family)
    return (same[0] if len(same) == 1 else None), same


def _lacking_preferred(needs: Needs, inv: Inventory) -> list[tuple[str, str, str]]:
    return [(folder, name, needs.family.get(folder, "")) for folder, names in sorted(needs.prefer.items())
            if folder in inv.models for name in sorted(names) if name not in inv.models[folder]]


def swaps(needs: Needs, inv: Inventory) -> list[tuple[str, str, str]]:
    """(folder, preferred file it lacks, the file of the right family it will use instead)."""
    out = []
    for folder, name, _ in _lacking_preferred(needs, inv):
        using, _ = substitute(needs, inv, folder)
        if using is not None:
            out.append((folder, name, using))
    return out


def _family(needs: Needs, folder: str) -> str:
    family = needs.family.get(folder, "")
    return needs.family_title.get(family, family)


def _say(needs: Needs, inv: Inventory, folder: str, name: str) -> str:
    if not folder:
        return f"lacks node {name}" + (f" ({needs.node_note})" if needs.node_note else "")
    if name in needs.prefer.get(folder, ()) and folder in needs.family:
        _, same = substitute(needs, inv, folder)
        has = f"it has {len(same)}: {_few(same, 4)}" if same else "it has none"
        return f"no {label(folder)} {name}, nor exactly one {_family(needs, folder)} {label(folder)} to use instead ({has})"
    return f"no {label(folder)} {name}"


def shortfall(needs: Needs, inv: Inventory) -> str | None:
    """Why the service cannot run the job ("no checkpoint x; lacks node Y (…)"), or None when nothing is known missing."""
    gaps = missing(needs, inv)
    return "; ".join(_say(needs, inv, f, n) for f, n in gaps) or None


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
            what = f"{label(folder)} {name}" if folder else f"node {name}"
            notes = [needs.node_note] if not folder and needs.node_note else []
            if folder in needs.family and name in needs.prefer.get(folder, ()):  # a stand-in of its family would do
                fam = f"{_family(needs, folder)} {label(folder)}"
                what += f" nor exactly one {fam} to use instead"
                same = sorted({n for other in inventories.values() for n in substitute(needs, other, folder)[1]})
                notes.append(f"their {fam}s: {_few(same)}" if same else f"they have: {_few(have)}" if have else "")
            elif close := difflib.get_close_matches(name, have, n=3, cutoff=0.4 if folder else 0.75):
                notes.append(f"closest: {', '.join(close)}")
            elif have and folder:
                notes.append(f"they have: {_few(have)}")
            notes = [n for n in notes if n]
            hint = f" ({'; '.join(notes)})" if notes else ""
            parts.append(f"no server has the {what}{hint}")
    return "; ".join(parts)


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (" …" if len(names) > n else "")
