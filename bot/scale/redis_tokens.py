"""One WeChat access token for every process, kept sealed in Redis.

The token is stored sealed (bot/scale/seal.py) with a Redis expiry a little before WeChat's, so
a reader never sees an expired one. One refresher at a time: whoever takes the lock (SET NX PX,
owner checked on release) asks WeChat; the others wait, bounded, for the new value. A stale
token (WeChat refused it) is replaced only if it is still the shared one, so ten processes that
saw it fail cause one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.platforms.wechat.tokens import Fetch, usable_for
from bot.scale.keys import Keys
from bot.scale.seal import BrokerSealer, Unsealable
from handlers.ports import DeliveryFailed

log = logging.getLogger("darkroom.shared")

# Compare-and-delete: only the owner releases the lock (it may have expired and been retaken).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenStore:
    def __init__(
        self,
        redis: Redis,
        sealer: BrokerSealer,
        keys: Keys = Keys(),
        lock_ttl: float = 40.0,  # longer than one token request may take (30 s HTTP timeout)
        wait: float = 45.0,  # how long a process waits for another's refresh before giving up
        poll: float = 0.05,
    ) -> None:
        self._redis = redis
        self._sealer = sealer
        self._key = keys.wechat_token
        self._lock_key = keys.wechat_token_lock
        self._lock_ttl_ms = int(lock_ttl * 1000)
        self._wait = wait
        self._poll = poll
        self._release = redis.register_script(_RELEASE)
        self._local = asyncio.Lock()  # one coroutine per process talks to Redis about it

    async def token(self, fetch: Fetch, stale: str | None = None) -> str:
        async with self._local:
            try:
                return await self._shared(fetch, stale)
            except RedisError as exc:
                raise DeliveryFailed(f"shared access token: Redis {type(exc).__name__}") from None

    async def _shared(self, fetch: Fetch, stale: str | None) -> str:
        deadline = time.monotonic() + self._wait
        while True:
            current = await self._read()
            if current and current != stale:
                return current
            owner = secrets.token_hex(16)
            if await self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ttl_ms):
                try:
                    current = await self._read()  # refreshed while we were taking the lock?
                    if current and current != stale:
                        return current
                    token, lifetime = await fetch()
                    sealed = self._sealer.seal(self._key, token.encode())
                    await self._redis.set(self._key, sealed, px=int(usable_for(lifetime) * 1000))
                    return token
                finally:
                    await self._release(keys=[self._lock_key], args=[owner])
            if time.monotonic() >= deadline:
                raise DeliveryFailed("access token: another process is still refreshing it")
            await asyncio.sleep(self._poll)

    async def _read(self) -> str:
        blob = await self._redis.get(self._key)
        if blob is None:
            return ""
        try:
            return self._sealer.open(self._key, blob if isinstance(blob, bytes) else blob.encode()).decode()
        except Unsealable:
            # Another instance secret, or not ours: treat as absent; the refresh overwrites it.
            log.warning("the shared WeChat token in Redis cannot be opened with this instance's key; replacing it")
            return ""
