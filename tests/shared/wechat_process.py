"""Another Darkroom process, for the shared-token tests: a WeChatClient against the fake WeChat
API, sending one customer-service text each time it reads "send" on stdin and answering "sent"
(or "failed"). `memory` as the third argument gives it its own in-memory token, as every process
had before shared state existed.

    python -m tests.shared.wechat_process API_URL REDIS_URL [redis|memory]
"""

from __future__ import annotations

import asyncio
import sys

from bot.platforms.wechat.client import WeChatClient
from bot.safeguards.pseudonym import Pseudonymizer
from bot.settings import Settings
from handlers.events import Address
from handlers.ports import DeliveryFailed
from handlers.replies import SendText
from tests.fakes.wechat_api import APPID, APPSECRET, TOKEN

SECRET = b"w" * 64
OPENID = "oSecondProcess_openid_0123456789"


def platform(api_url: str, tokens) -> WeChatClient:
    settings = Settings(wechat_token=TOKEN, wechat_appid=APPID, wechat_secret=APPSECRET, wechat_api_url=api_url, secret=SECRET)
    return WeChatClient(settings, Pseudonymizer(SECRET), tokens=tokens)


def redis_tokens(redis_url: str):
    from redis.asyncio import Redis

    from bot.scale.redis_tokens import RedisTokenStore
    from bot.scale.seal import BrokerSealer

    return RedisTokenStore(Redis.from_url(redis_url), BrokerSealer(SECRET))


async def main(api_url: str, redis_url: str, mode: str) -> None:
    tokens = redis_tokens(redis_url) if mode == "redis" else None
    wechat = platform(api_url, tokens)
    await wechat.start()
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() != "send":
                continue
            try:
                await wechat.send(Address("wechat", OPENID), SendText("from the second process"))
                print("sent", flush=True)
            except DeliveryFailed as exc:
                print(f"failed {exc}", flush=True)
    finally:
        await wechat.stop()
        if tokens is not None:
            await tokens._redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "redis"))
