"""Two WeChat processes, one access token: the second process (a real subprocess) uses the token
the first one fetched, and a token WeChat refuses is replaced once for both."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
from redis import Redis

from bot.scale.audit import audit_broker
from handlers.events import Address
from handlers.replies import SendText
from tests.shared.wechat_process import OPENID as OPENID_B
from tests.shared.wechat_process import SECRET, platform, redis_tokens

ROOT = Path(__file__).resolve().parents[2]
OPENID_A = "oFirstProcess_openid_abcdefghij"


class SecondProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, api_url: str, redis_url: str, mode: str) -> SecondProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.shared.wechat_process", api_url, redis_url, mode,
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def send(self) -> str:
        self.proc.stdin.write(b"send\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        return line.decode().strip()

    async def stop(self) -> None:
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 30)


async def run_both(api, redis_url: str, mode: str) -> tuple[int, int]:
    """Both processes send, then every token expires and both send again: the token requests
    WeChat saw (after the first round, after the second)."""
    tokens = redis_tokens(redis_url) if mode == "redis" else None
    first = platform(api.url, tokens)
    await first.start()
    second = await SecondProcess.start(api.url, redis_url, mode)
    try:
        await first.send(Address("wechat", OPENID_A), SendText("from the first process"))
        assert await second.send() == "sent"
        issued_first = api.tokens_issued
        api.expire_tokens()  # as after two hours: both processes are refused (errcode 42001)
        results = await asyncio.gather(first.send(Address("wechat", OPENID_A), SendText("again")), second.send())
        assert results[1] == "sent"
        assert len(api.texts(OPENID_A)) == 2 and len(api.texts(OPENID_B)) == 2
        return issued_first, api.tokens_issued
    finally:
        await second.stop()
        await first.stop()
        if tokens is not None:
            await tokens._redis.aclose()


@pytest.mark.redis
async def test_two_processes_share_one_token_and_refresh_it_once(wechat_api, redis_url):
    assert await run_both(wechat_api, redis_url, "redis") == (1, 2)
    # What Redis holds now: the sealed token only, no OpenID and no token in the clear.
    redis = Redis.from_url(redis_url)
    try:
        everything = b"".join(k + (redis.dump(k) or b"") for k in redis.scan_iter())
        for raw in (OPENID_A, OPENID_B, "ACCESS_TOKEN_"):
            assert raw.encode() not in everything
        assert audit_broker(redis, SECRET, out=io.StringIO()) == 0
    finally:
        redis.close()


@pytest.mark.redis
async def test_without_the_shared_store_each_process_asks_for_its_own(wechat_api, redis_url):
    """The proof above fails when the token is not shared: each process then asks WeChat for a
    token of its own (which, with the real WeChat, expires the other's)."""
    issued_first, issued_after = await run_both(wechat_api, redis_url, "memory")
    assert issued_first == 2 and issued_after == 4
