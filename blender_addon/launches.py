"""The backends Backlot can start, as the panel shows them: the launch entries that are not running, with Start.

Backlot's ``launch.list`` and its ``launch.updated`` notifications say each entry's state; a Start pressed here
shows "◔ starting" at once and the answer of ``launch.start`` arrives through the tick, like everything else.
Messages are applied in the order they came, so the latest word on an entry wins. Stdlib only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOPIC = "launch.updated"  # subscribed in a request of its own: a Backlot without the launcher refuses only that
SYMBOLS = {"running": "●", "starting": "◔", "restarting": "◔", "stopping": "◔", "stopped": "○", "failed": "○",
           "blocked": "◐"}
STARTABLE = ("stopped", "failed")
WHY_SHOWN = ("failed", "blocked")  # states whose message the panel shows under the row


@dataclass(frozen=True)
class LaunchRow:
    """One entry in the panel: symbol, name, state word, why (failed, blocked, refused) and whether Start shows."""

    name: str
    symbol: str
    state: str
    message: str
    startable: bool


class LaunchBook:
    """The launch entries as Backlot last described them, and the starts asked for from this panel."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.asked: set[str] = set()  # Start pressed, Backlot's answer not here yet
        self.refused: dict[str, str] = {}  # why Backlot refused a start, until the entry changes

    def replace(self, views: Any) -> None:
        """All entries from a ``launch.list`` answer."""
        items = views.get("entries", []) if isinstance(views, dict) else views or []
        self.entries = {str(v["name"]): v for v in items if isinstance(v, dict) and v.get("name")}

    def apply(self, view: Any) -> bool:
        """One entry's new view (``launch.updated``, or a start's answer); False when it is not one."""
        if not isinstance(view, dict) or not view.get("name"):
            return False
        name = str(view["name"])
        self.entries[name] = view
        self.refused.pop(name, None)
        return True

    def asking(self, name: str) -> None:
        """Start was pressed: show the entry starting until Backlot answers."""
        self.asked.add(name)
        self.refused.pop(name, None)

    def answered(self, name: str, result: Any = None, error: str = "") -> None:
        """Backlot's answer to a start: the entries it returned, or why it refused."""
        self.asked.discard(name)
        if error:
            self.refused[name] = error
            return
        for view in (result or {}).get("entries", []) if isinstance(result, dict) else []:
            self.apply(view)

    def rows(self) -> list[LaunchRow]:
        """The entries that are not running, by name (a running one is a service the panel lists already)."""
        out = []
        for name, view in sorted(self.entries.items()):
            state = str(view.get("state", ""))
            if name in self.asked:
                state = "starting"
            if state == "running":
                continue
            why = self.refused.get(name) or (str(view.get("message", "")) if state in WHY_SHOWN else "")
            out.append(LaunchRow(name, SYMBOLS.get(state, "◌"), state, why.split("\n")[0],
                                 state in STARTABLE and name not in self.asked))
        return out
