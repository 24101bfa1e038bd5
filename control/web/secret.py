"""The web console's signing key: read from its file, created on first use (0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def signing_key(path: Path) -> bytes:
    """The key at ``path``; a new random one written there (owner-only) when the file is missing.

    Created with O_EXCL so two processes starting together keep the same key."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return signing_key(path)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
        return signing_key(path)
    if len(key) < 32:
        raise ValueError(f"{path}: the signing key is shorter than 32 bytes; delete the file to have a new one made")
    return key
