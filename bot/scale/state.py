"""State shared by several Darkroom processes (issue 13), kept in Redis when DARKROOM_BROKER_URL
is set: the sealed WeChat access token and Telegram's outbound limits. Nothing else is stored
there (bot/scale/keys.py lists every key; `darkroom audit` checks it). Unset, nothing here is
used and each process keeps these in memory, as a single process always did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.keys import Keys
from bot.scale.seal import BrokerSealer
from bot.settings import Settings, StartupError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("darkroom.shared")


@dataclass
class SharedState:
    redis: Redis
    sealer: BrokerSealer
    pseudonymize: Pseudonymizer
    keys: Keys = Keys()

    def wechat_tokens(self):
        from bot.scale.redis_tokens import RedisTokenStore

        return RedisTokenStore(self.redis, self.sealer, self.keys)

    def telegram_limiter(self):
        from bot.scale.ratelimit import RedisRateLimiter

        return RedisRateLimiter(self.redis, self.pseudonymize, self.keys)

    async def close(self) -> None:
        await self.redis.aclose()


async def connect(settings: Settings, pseudonymize: Pseudonymizer) -> SharedState | None:
    """The shared state when DARKROOM_REDIS_URL (or a Redis DARKROOM_BROKER_URL) is set (None otherwise); refuses to start, with
    one clear message, when Redis is missing or unreachable."""
    if not settings.redis_url:
        return None
    try:
        from redis.asyncio import Redis
        from redis.exceptions import RedisError
    except ImportError:
        raise StartupError(
            "DARKROOM_REDIS_URL (or a Redis DARKROOM_BROKER_URL) is set but the Redis client is not installed: pip install 'darkroom-bot[scale]'"
        ) from None
    try:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=10, socket_timeout=10, health_check_interval=30)
    except ValueError:
        raise StartupError("DARKROOM_REDIS_URL is not a valid Redis URL") from None
    try:
        await redis.ping()
    except RedisError as exc:
        await redis.aclose()
        raise StartupError(f"cannot use Redis at DARKROOM_REDIS_URL ({type(exc).__name__}); is it running, is the password right?") from None
    await _warn_if_persistent(redis)
    log.info("shared state in Redis: WeChat token and Telegram limits are shared with other processes")
    return SharedState(redis, BrokerSealer(settings.secret), pseudonymize)


async def _warn_if_persistent(redis) -> None:
    from redis.exceptions import RedisError

    try:
        save = (await redis.config_get("save")).get("save", "")
        appendonly = (await redis.config_get("appendonly")).get("appendonly", "")
    except RedisError:
        log.warning("Redis does not allow CONFIG GET: cannot check that it keeps nothing on disk; see `darkroom audit --broker`")
        return
    if _text(save).strip() or _text(appendonly) != "no":
        log.warning("Redis persistence is on (save/appendonly): run it with --save '' --appendonly no; see `darkroom audit --broker`")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
