"""Pseudonyms: people and chats are known to storage and logs only by an HMAC of their id."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from bot.settings import StartupError

KEY_FORMAT = re.compile(rb"[0-9a-f]{64}")  # what load_or_create_secret writes (and `openssl rand -hex 32`)


def load_or_create_secret(path: Path) -> bytes:
    """The instance key from ``path``, created (mode 0600) on first run. A key that cannot be
    read or written, or is not 64 hex digits, stops start-up with a clear StartupError."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise StartupError(f"cannot read the key file {path} ({exc.strerror}); check its owner and permissions") from None
        if not KEY_FORMAT.fullmatch(key):
            raise StartupError(
                f"the key file {path} is damaged (it must hold 64 hexadecimal digits); restore it from a backup, "
                "or delete it to start afresh (existing records will then match no one)"
            ) from None
        return key
    except OSError as exc:
        raise StartupError(f"cannot create the key file {path} ({exc.strerror}); check the data directory's permissions") from None
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
