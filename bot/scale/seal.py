"""Sealing values kept in Redis: AES-GCM under a key derived from the instance secret, bound to
the Redis key it is stored under (so a blob cannot be moved to another key), behind a version
prefix that `darkroom audit` recognises."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = b"drs1:"  # Darkroom sealed, version 1
_NONCE = 12
_TAG = 16


class Unsealable(ValueError):
    """Not a blob sealed by this instance for this key (another secret, tampered, or plain)."""


def looks_sealed(blob: bytes) -> bool:
    return blob.startswith(PREFIX) and len(blob) > len(PREFIX) + _NONCE + _TAG


class BrokerSealer:
    def __init__(self, secret: bytes) -> None:
        # A key of its own (its own label): the database's address seal and this never share one.
        key = hmac.new(secret, b"darkroom:broker-seal:v1", hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, key: str, value: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return PREFIX + nonce + self._aead.encrypt(nonce, value, key.encode())

    def open(self, key: str, blob: bytes) -> bytes:
        if not looks_sealed(blob):
            raise Unsealable("not a sealed value")
        body = blob[len(PREFIX):]
        try:
            return self._aead.decrypt(body[:_NONCE], body[_NONCE:], key.encode())
        except InvalidTag:
            raise Unsealable("sealed under another secret or tampered with") from None

    def __repr__(self) -> str:
        return "BrokerSealer(<key>)"
