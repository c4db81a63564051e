"""The WeChat token store: one token shared by independent stores (each its own Redis client and
lock, as separate processes have), one refresher at a time, and a stale token replaced once."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.platforms.wechat.tokens import MemoryTokenStore
from bot.scale.keys import Keys
from bot.scale.redis_tokens import RedisTokenStore
from bot.scale.seal import PREFIX, BrokerSealer
from handlers.ports import DeliveryFailed

SECRET = b"t" * 64


class CountingFetch:
    """WeChat's token endpoint as the stores see it: slow enough for every caller to overlap."""

    def __init__(self, delay: float = 0.2) -> None:
        self.calls = 0
        self.delay = delay

    async def __call__(self) -> tuple[str, float]:
        self.calls += 1
        number = self.calls
        await asyncio.sleep(self.delay)
        return f"TOKEN-{number}-abcdefgh", 7200.0


async def stores(url: str, count: int, **options) -> list[RedisTokenStore]:
    return [RedisTokenStore(Redis.from_url(url), BrokerSealer(SECRET), **options) for _ in range(count)]


async def close(all_stores) -> None:
    for store in all_stores:
        await store._redis.aclose()


async def test_memory_store_replaces_a_stale_token_once():
    store, fetch = MemoryTokenStore(), CountingFetch(0.05)
    first = await store.token(fetch)
    assert await store.token(fetch) == first and fetch.calls == 1
    results = await asyncio.gather(*(store.token(fetch, stale=first) for _ in range(5)))
    assert set(results) == {"TOKEN-2-abcdefgh"} and fetch.calls == 2


@pytest.mark.redis
async def test_independent_stores_share_one_token_and_one_request(redis_url):
    group = await stores(redis_url, 5)
    fetch = CountingFetch()
    try:
        results = await asyncio.gather(*(store.token(fetch) for store in group for _ in range(3)))
        assert fetch.calls == 1
        assert set(results) == {"TOKEN-1-abcdefgh"}
        # Refused by WeChat everywhere at once: replaced once, for everybody.
        results = await asyncio.gather(*(store.token(fetch, stale="TOKEN-1-abcdefgh") for store in group))
        assert fetch.calls == 2
        assert set(results) == {"TOKEN-2-abcdefgh"}
        # A late report about the old token does not replace the new one.
        assert await group[0].token(fetch, stale="TOKEN-1-abcdefgh") == "TOKEN-2-abcdefgh"
        assert fetch.calls == 2
    finally:
        await close(group)


@pytest.mark.redis
async def test_the_token_is_sealed_in_redis_and_expires_before_wechats(redis_url):
    [store] = await stores(redis_url, 1)
    try:
        token = await store.token(CountingFetch(0))
        raw = await store._redis.get(Keys().wechat_token)
        assert raw.startswith(PREFIX) and token.encode() not in raw
        assert BrokerSealer(SECRET).open(Keys().wechat_token, raw) == token.encode()
        ttl = await store._redis.pttl(Keys().wechat_token)
        assert 0 < ttl <= (7200 - 300) * 1000
        assert await store._redis.exists(Keys().wechat_token_lock) == 0  # released
    finally:
        await close([store])


@pytest.mark.redis
async def test_a_dead_refreshers_lock_expires_and_another_takes_over(redis_url):
    [store] = await stores(redis_url, 1, wait=5.0)
    fetch = CountingFetch(0)
    try:
        await store._redis.set(Keys().wechat_token_lock, "0" * 32, px=400)  # a process died holding it
        assert await store.token(fetch) == "TOKEN-1-abcdefgh"
        assert fetch.calls == 1
    finally:
        await close([store])


@pytest.mark.redis
async def test_waiting_for_another_refresher_is_bounded(redis_url):
    [store] = await stores(redis_url, 1, wait=0.3)
    fetch = CountingFetch(0)
    try:
        await store._redis.set(Keys().wechat_token_lock, "0" * 32, px=10_000)
        with pytest.raises(DeliveryFailed, match="another process is still refreshing"):
            await store.token(fetch)
        assert fetch.calls == 0
    finally:
        await close([store])


@pytest.mark.redis
async def test_a_token_sealed_under_another_secret_is_replaced(redis_url):
    [store] = await stores(redis_url, 1)
    fetch = CountingFetch(0)
    try:
        foreign = BrokerSealer(b"x" * 64).seal(Keys().wechat_token, b"SOMEONE-ELSES")
        await store._redis.set(Keys().wechat_token, foreign)
        assert await store.token(fetch) == "TOKEN-1-abcdefgh"
    finally:
        await close([store])


async def test_an_unreachable_redis_is_a_delivery_failure_not_a_crash():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisTokenStore(Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1), BrokerSealer(SECRET))
    try:
        with pytest.raises(DeliveryFailed, match="Redis ConnectionError"):
            await store.token(CountingFetch(0))
    finally:
        await store._redis.aclose()
