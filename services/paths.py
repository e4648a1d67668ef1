"""Where Backlot keeps its files (stdlib only: the window reads its layout file before the settings load)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Paths(NamedTuple):  # not a dataclass: ``dataclasses`` is 5 ms the window's first paint need not wait for
    """Where this Backlot keeps its configuration, data and API token."""

    home: Path | None
    config_dir: Path
    data_dir: Path

    @property
    def config_file(self) -> Path:
        """The user's TOML settings."""
        return self.config_dir / "config.toml"

    @property
    def standins_file(self) -> Path:
        """Stand-in URLs recorded by a running ``backlot demo``."""
        return self.config_dir / "standins.toml"

    @property
    def token_file(self) -> Path:
        """The socket API token (owner-only permissions)."""
        return self.config_dir / "api-token"

    @property
    def window_file(self) -> Path:
        """The window's layout (geometry, docks, splitter), written by Qt."""
        return self.config_dir / "window.ini"

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None) -> Paths:
        """Paths under ``home`` when given, else the platform's user folders."""
        if home:
            root = Path(home).expanduser().resolve()
            return cls(root, root / "config", root / "data")
        import platformdirs  # only without a home: a few ms the window's first paint need not wait for

        return cls(None, platformdirs.user_config_path("backlot"), platformdirs.user_data_path("backlot"))
