"""Where the WeChat access token lives. WeChat issues one token per app at a time: asking for a
new one expires the old one (after a short grace), so every process of one bot must use the same
token and only one may refresh it.

`MemoryTokenStore` is the single-process store (an asyncio lock and a cached value);
`RedisTokenStore` (bot/scale/redis_tokens.py) shares one sealed token among processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

# Asks WeChat for a new token: (token, lifetime in seconds).
Fetch = Callable[[], Awaitable[tuple[str, float]]]
EARLY = 300.0  # replace a token this long before WeChat says it expires


def usable_for(lifetime: float) -> float:
    return max(60.0, lifetime - EARLY)


class TokenStore(Protocol):
    async def token(self, fetch: Fetch, stale: str | None = None) -> str:
        """The current token, fetched with ``fetch`` when there is none or it is about to
        expire. ``stale`` is a token WeChat just refused: it is replaced once, however many
        callers (in however many processes) saw it fail."""
        ...


class MemoryTokenStore:
    def __init__(self) -> None:
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self, fetch: Fetch, stale: str | None = None) -> str:
        async with self._lock:
            if self._token and time.monotonic() < self._expires and self._token != stale:
                return self._token
            token, lifetime = await fetch()
            self._token = token
            self._expires = time.monotonic() + usable_for(lifetime)
            return token
