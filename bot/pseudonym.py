"""Pseudonyms: people and chats are known to storage and logs only by an HMAC of their id."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def load_or_create_secret(path: Path) -> bytes:
    """The instance key from ``path``, created (mode 0600) on first run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(f"the key file {path} is damaged (too short); restore it or delete it") from None
        return key
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


class Pseudonymizer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the pseudonym key must be at least 32 bytes")
        self._secret = secret

    def __call__(self, platform: str, kind: str, raw_id: str | int) -> str:
        """A stable 128-bit pseudonym for ``raw_id`` of ``kind`` ("user"/"chat") on ``platform``."""
        message = f"{platform}:{kind}:{raw_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:
        return "Pseudonymizer(<secret>)"
