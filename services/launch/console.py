"""A launched backend's console: the last lines it printed, numbered, with secrets blanked out."""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

REDACTED = "••••"
# ANSI colour and cursor codes: a console is shown as plain text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@dataclass(frozen=True)
class ConsoleLine:
    """One line and its number since the console began (numbers keep counting as old lines drop out)."""

    n: int
    text: str

    def to_dict(self) -> dict[str, object]:
        """``{"n": 12, "text": "..."}``."""
        return {"n": self.n, "text": self.text}


class Console:
    """A bounded ring of lines; ``add`` takes raw text (partial lines wait for their end)."""

    def __init__(self, limit: int = 2000, secrets: Iterable[str] = ()) -> None:
        self.lines: deque[ConsoleLine] = deque(maxlen=max(1, limit))
        self.next_n = 1
        self._partial = ""
        self._secrets: list[str] = []
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Values blanked out of every line from now on (longest first, so one never half-hides another)."""
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def resize(self, limit: int) -> None:
        """Keep at most ``limit`` lines (the newest)."""
        self.lines = deque(self.lines, maxlen=max(1, limit))

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def add(self, chunk: str) -> list[ConsoleLine]:
        """Append raw output; the complete lines it made, as stored."""
        if not chunk:
            return []
        text = self._partial + chunk
        parts = text.split("\n")
        self._partial = parts.pop()
        if len(self._partial) > 16384:  # a progress bar without newlines: show it anyway, in pieces
            parts.append(self._partial)
            self._partial = ""
        return self._store(parts)

    def note(self, text: str) -> ConsoleLine:
        """A line of Backlot's own (started, exited with code N …), marked as such."""
        return self._store([f"[backlot] {text}"])[0]

    def flush(self) -> list[ConsoleLine]:
        """Store a trailing partial line (the process ended)."""
        if not self._partial:
            return []
        rest, self._partial = self._partial, ""
        return self._store([rest])

    def _store(self, raw: list[str]) -> list[ConsoleLine]:
        made = []
        for part in raw:
            # a carriage return redraws the line (progress bars): keep what the terminal would show last
            shown = _ANSI.sub("", part.rstrip("\r").rsplit("\r", 1)[-1])
            line = ConsoleLine(self.next_n, self.redact(shown))
            self.next_n += 1
            self.lines.append(line)
            made.append(line)
        return made

    def since(self, n: int = 0, limit: int | None = None) -> list[ConsoleLine]:
        """Lines numbered above ``n`` (all kept ones for 0), at most the last ``limit``."""
        picked = [line for line in self.lines if line.n > n]
        return picked[-limit:] if limit else picked

    def tail(self, count: int) -> list[str]:
        """The last ``count`` lines' text."""
        return [line.text for line in list(self.lines)[-count:]] if count > 0 else []
