"""Telegram's limits held across processes: independent limiters (each its own Redis client, as
separate processes have) admit together no more than the overall and per-group limits, pass
flood control on per chat, and keep no raw chat id in Redis."""

from __future__ import annotations

import asyncio
import time
import warnings
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from telegram.error import RetryAfter

from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.keys import Keys, kind_of
from bot.scale.ratelimit import Limit, RedisRateLimiter

SECRET = b"r" * 64
GROUP = -1001234567890
OTHER_GROUP = -1009876543210
PERSON = 111111111
pseudonymize = Pseudonymizer(SECRET)


def limiter(url: str, keys: Keys = Keys(), **limits) -> RedisRateLimiter:
    return RedisRateLimiter(Redis.from_url(url), pseudonymize, keys, **limits)


async def close(*limiters) -> None:
    for one in limiters:
        await one._redis.aclose()


class Recorder:
    """The Bot API as the limiters see it: records when each request went out, and to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    def call(self, chat_id: int):
        async def request():
            self.sent.append((time.monotonic(), chat_id))
            return True

        return request

    def times(self, chat_id: int | None = None) -> list[float]:
        return sorted(at for at, chat in self.sent if chat_id is None or chat == chat_id)


def busiest(times: list[float], window: float) -> int:
    """The most requests seen in any window of ``window`` seconds."""
    most, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def send(limiter_, recorder: Recorder, chat_id: int, endpoint: str = "sendMessage"):
    return await limiter_.process_request(recorder.call(chat_id), (), {}, endpoint, {"chat_id": chat_id}, None)


async def burst(limiters, recorder: Recorder, chats: list[int], each: int) -> None:
    await asyncio.gather(*(send(one, recorder, chat) for one in limiters for chat in chats for _ in range(each)))


# Windows are measured where the requests are made; the limiter counts on Redis's clock. The
# check uses a window a little shorter than the limit's so that scheduling delays between the two
# cannot make a correct limiter look wrong, while an unshared one still overshoots by far.
SLACK = 0.8


@pytest.mark.redis
async def test_independent_limiters_hold_the_overall_rate_together(redis_url):
    overall = Limit(5, 0.5)
    a, b = limiter(redis_url, overall=overall), limiter(redis_url, overall=overall)
    recorder = Recorder()
    try:
        await burst([a, b], recorder, [PERSON + i for i in range(5)], each=2)  # 20 requests, private chats
    finally:
        await close(a, b)
    assert len(recorder.sent) == 20
    assert busiest(recorder.times(), overall.seconds * SLACK) <= overall.count


@pytest.mark.redis
async def test_unshared_limiters_break_the_overall_rate(redis_url):
    """The proof above fails when the limit is not shared: two limiters with separate state (as
    two processes each limiting on its own) together send twice the rate."""
    overall = Limit(5, 0.5)
    a = limiter(redis_url, Keys("process-a"), overall=overall)
    b = limiter(redis_url, Keys("process-b"), overall=overall)
    recorder = Recorder()
    try:
        await burst([a, b], recorder, [PERSON + i for i in range(5)], each=2)
    finally:
        await close(a, b)
    assert busiest(recorder.times(), overall.seconds * SLACK) > overall.count


@pytest.mark.redis
async def test_per_group_limit_is_shared_and_other_groups_are_not_held_up(redis_url):
    per_group = Limit(3, 1.0)
    a, b = limiter(redis_url, per_group=per_group), limiter(redis_url, per_group=per_group)
    recorder = Recorder()
    try:
        await asyncio.gather(burst([a, b], recorder, [GROUP], each=4), burst([a], recorder, [OTHER_GROUP], each=3))
    finally:
        await close(a, b)
    assert len(recorder.times(GROUP)) == 8
    assert busiest(recorder.times(GROUP), per_group.seconds * SLACK) <= per_group.count
    # The other group's three went out at once, while the first group was waiting its turn.
    other = recorder.times(OTHER_GROUP)
    assert other[-1] < recorder.times(GROUP)[-1] - per_group.seconds


@pytest.mark.redis
async def test_requests_without_a_chat_are_not_limited_or_recorded(redis_url):
    one = limiter(redis_url, overall=Limit(1, 60.0))
    try:
        for _ in range(3):
            assert await one.process_request(lambda: asyncio.sleep(0, True), (), {}, "getMe", {}, None) is True
        assert await one._redis.dbsize() == 0
    finally:
        await close(one)


def retry_after(seconds: float) -> RetryAfter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RetryAfter(timedelta(seconds=seconds))


@pytest.mark.redis
async def test_flood_control_on_one_chat_pauses_that_chat_in_every_process(redis_url):
    a, b = limiter(redis_url), limiter(redis_url)
    recorder = Recorder()

    async def flooded():
        raise retry_after(1.5)

    try:
        with pytest.raises(RetryAfter):  # passed on to the adapter, which waits and retries
            await a.process_request(flooded, (), {}, "sendMessage", {"chat_id": GROUP}, None)
        with pytest.raises(RetryAfter) as caught:  # the other process is told at once, without a 429
            await send(b, recorder, GROUP)
        assert 0 < caught.value._retry_after.total_seconds() <= 2
        assert recorder.sent == []
        await send(b, recorder, OTHER_GROUP)  # other chats are not held up
        await send(b, recorder, PERSON)
        await asyncio.sleep(1.6)
        await send(b, recorder, GROUP)  # once the wait is over, the chat is served again
        assert [chat for _, chat in recorder.sent] == [OTHER_GROUP, PERSON, GROUP]
    finally:
        await close(a, b)


@pytest.mark.redis
async def test_redis_holds_only_pseudonymous_counters(redis_url):
    one = limiter(redis_url, per_group=Limit(50, 60.0))
    recorder = Recorder()

    async def flooded():
        raise retry_after(30)

    try:
        await burst([one], recorder, [GROUP, PERSON, OTHER_GROUP], each=2)
        with pytest.raises(RetryAfter):
            await one.process_request(flooded, (), {}, "sendMessage", {"chat_id": PERSON}, None)
        redis = one._redis
        keys = [k async for k in redis.scan_iter()]
        assert len(keys) == 4  # the overall log, two group logs, one pause
        everything = b"".join([k + await redis.dump(k) for k in keys])
        for raw_id in (GROUP, OTHER_GROUP, PERSON):
            assert str(raw_id).encode() not in everything
            assert str(abs(raw_id)).encode() not in everything
        assert all(kind_of(k.decode()) is not None for k in keys)
        assert await redis.exists(Keys().telegram_group(pseudonymize("telegram", "chat", GROUP)))
    finally:
        await close(one)


async def test_an_unreachable_redis_lets_requests_through_with_one_warning(caplog):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    one = limiter(f"redis://127.0.0.1:{port}/0")
    recorder = Recorder()
    try:
        with caplog.at_level("WARNING", logger="darkroom.shared"):
            for _ in range(3):
                await send(one, recorder, PERSON)
    finally:
        await close(one)
    assert len(recorder.sent) == 3
    assert len([r for r in caplog.records if "without the shared limits" in r.getMessage()]) == 1
