"""State shared by several Darkroom processes (issue 13), kept in Redis when DARKROOM_BROKER_URL
is set: the sealed WeChat access token and Telegram's outbound limits. Nothing else is stored
there (bot/scale/keys.py lists every key; `darkroom audit` checks it). Unset, nothing here is
used and each process keeps these in memory, as a single process always did.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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


WAIT_LOG_EVERY = 30.0  # seconds between "waiting for Redis" lines while it stays away


async def connect(settings: Settings, pseudonymize: Pseudonymizer, wait: bool = False) -> SharedState | None:
    """The shared state when DARKROOM_REDIS_URL (or a Redis DARKROOM_BROKER_URL) is set (None otherwise); refuses to start, with
    one clear message, when Redis is missing or unreachable. ``wait``: an unreachable Redis is
    waited for (with backoff, a line every WAIT_LOG_EVERY seconds) instead; a refused password
    still stops start-up."""
    if not settings.redis_url:
        return None
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import AuthenticationError, RedisError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        raise StartupError(
            "DARKROOM_REDIS_URL (or a Redis DARKROOM_BROKER_URL) is set but the Redis client is not installed: pip install 'darkroom-bot[scale]'"
        ) from None
    try:
        # A command that meets a dead connection (Redis restarted) reconnects and is tried again.
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=10,
            socket_timeout=10,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        )
    except ValueError:
        raise StartupError("DARKROOM_REDIS_URL is not a valid Redis URL") from None
    delay, logged = 0.5, -WAIT_LOG_EVERY
    loop = asyncio.get_running_loop()
    while True:
        try:
            await redis.ping()
            break
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # (AuthenticationError is a ConnectionError too, but waiting will not fix a password.)
            if not wait or isinstance(exc, AuthenticationError):
                await redis.aclose()
                raise StartupError(f"cannot use Redis at DARKROOM_REDIS_URL ({type(exc).__name__}); is it running, is the password right?") from None
            if loop.time() - logged >= WAIT_LOG_EVERY:
                log.warning("waiting for Redis at %s (%s); retrying with backoff", redis_address(settings.redis_url), type(exc).__name__)
                logged = loop.time()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
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


def redis_address(url: str) -> str:
    """host:port of a Redis URL, for a log line (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}" if parts.scheme != "unix" else "a unix socket"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
