"""The socket API token: created once at first start with owner-only permissions, reused afterwards."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from backlot.services.errors import BacklotError


class TokenError(BacklotError):
    """The token file cannot be created or read (the message names the file, never the token)."""


def ensure_token(path: Path) -> str:
    """The token in ``path``, creating the file (mode 0600, never replacing one) when it is missing or empty."""
    try:
        token = read_token(path)
    except FileNotFoundError:
        pass
    else:
        if path.stat().st_mode & 0o077:  # someone loosened it: owner-only again
            path.chmod(0o600)
        return token
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two instances starting together cannot both write a token; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    except OSError as err:
        raise TokenError(f"cannot create the API token file {path}: {err.strerror or err}") from err
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def read_token(path: Path) -> str:
    """The token a client presents in ``session.hello``; FileNotFoundError when Backlot never started here."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise TokenError(f"cannot read the API token file {path}: {err.strerror or err}") from err
    if not token:
        raise TokenError(f"the API token file {path} is empty; delete it and restart Backlot")
    return token
