"""Telegram's outbound limits, shared by every process that sends as the same bot.

Telegram allows a bot about 30 messages a second overall and 20 a minute in one group; ten
processes that each keep to that on their own would together earn flood waits. This limiter (a
PTB `BaseRateLimiter`, set on the Application builder) keeps sliding-window logs in Redis and
admits a request only when it fits every window it belongs to, in one atomic script that reads
Redis's own clock (processes on several machines agree on time). As PTB's AIORateLimiter does:
requests that address a chat count towards the overall limit, requests to a group (negative id or
@name) also towards that group's; anything else (getMe, getUpdates, ...) is not limited.

Flood control is still honoured per chat, as the Telegram adapter does it: a RetryAfter is passed
on to the caller unchanged (bot/platforms/telegram/client.py waits and retries), and is also recorded in Redis for
that chat alone, so that other processes' requests to that chat get the same RetryAfter instead of
another 429. Redis keys carry only the chat's HMAC pseudonym, never its id.

If Redis cannot be reached, requests go out unlimited (Telegram's own RetryAfter still protects
us) and one warning is logged until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.keys import Keys

log = logging.getLogger("darkroom.shared")


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: float

    @property
    def window_ms(self) -> int:
        return max(1, int(self.seconds * 1000))


OVERALL = Limit(30, 1.0)
PER_GROUP = Limit(20, 60.0)

# KEYS: 1 overall log, 2 the chat's pause, 3 the group's log (groups only).
# ARGV: 1 overall count, 2 overall window ms, 3 entry id, 4 group count, 5 group window ms.
# Returns {0, 0} (admitted and recorded), {1, ms} (a window is full: try again in ms) or
# {2, ms} (the chat is under flood control for ms more).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {2, paused} end
local function wait_for(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
local wait = wait_for(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if #KEYS >= 3 then wait = math.max(wait, wait_for(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]))) end
if wait > 0 then return {1, wait} end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if #KEYS >= 3 then
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return {0, 0}
"""

ADMITTED, WINDOW_FULL, PAUSED = 0, 1, 2
PAUSE_GRACE = 1.0  # seconds


class RedisRateLimiter(BaseRateLimiter[int]):
    def __init__(
        self,
        redis: Redis,
        pseudonymize: Pseudonymizer,
        keys: Keys = Keys(),
        overall: Limit = OVERALL,
        per_group: Limit = PER_GROUP,
        max_wait: float = 120.0,  # longer than this in the queue: handed back as a RetryAfter
    ) -> None:
        self._redis = redis
        self._pseudonymize = pseudonymize
        self._keys = keys
        self._overall = overall
        self._per_group = per_group
        self._max_wait = max_wait
        self._admit = redis.register_script(_ADMIT)
        self._failing = False

    async def initialize(self) -> None:
        """Nothing to set up: the Redis client belongs to bot.shared.SharedState."""

    async def shutdown(self) -> None:
        """Nothing to release: the Redis client belongs to bot.shared.SharedState."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        chat_id = data.get("chat_id")
        if chat_id is None:
            return await callback(*args, **kwargs)
        with contextlib.suppress(ValueError, TypeError):
            chat_id = int(chat_id)
        group = isinstance(chat_id, str) or chat_id < 0
        chat = self._pseudonymize("telegram", "chat", chat_id)
        await self.acquire(chat, group)
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            await self._pause(chat, exc)
            raise

    async def acquire(self, chat: str, group: bool) -> None:
        """Wait until one more request to the chat with pseudonym ``chat`` fits every limit, and
        count it. Raises RetryAfter while the chat is under flood control."""
        keys = [self._keys.telegram_sent, self._keys.telegram_pause(chat)]
        if group:
            keys.append(self._keys.telegram_group(chat))
        args: list[str | int] = [self._overall.count, self._overall.window_ms, "", self._per_group.count, self._per_group.window_ms]
        waited = 0.0
        while True:
            args[2] = secrets.token_hex(8)
            try:
                verdict, ms = await self._admit(keys=keys, args=args)
            except RedisError as exc:
                self._unavailable(exc)
                return
            self._available()
            if verdict == ADMITTED:
                return
            seconds = int(ms) / 1000
            # A pause about to end is waited out here: the adapter retrying right after its own
            # sleep should not lose an attempt to a few milliseconds of clock difference.
            if (verdict == PAUSED and seconds > PAUSE_GRACE) or waited + seconds > self._max_wait:
                with warnings.catch_warnings():  # PTB 22 announces a type change when built
                    warnings.simplefilter("ignore")
                    raise RetryAfter(timedelta(seconds=math.ceil(seconds)))
            await asyncio.sleep(seconds)
            waited += seconds

    async def _pause(self, chat: str, exc: RetryAfter) -> None:
        seconds = exc._retry_after.total_seconds()  # the timedelta, without PTB's type warning
        try:
            await self._redis.set(self._keys.telegram_pause(chat), b"1", px=max(1, int(seconds * 1000)))
        except RedisError as error:
            self._unavailable(error)

    def _unavailable(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning("Redis cannot be reached (%s): Telegram requests go out without the shared limits", type(exc).__name__)

    def _available(self) -> None:
        if self._failing:
            self._failing = False
            log.info("Redis is back: Telegram requests keep to the shared limits again")
