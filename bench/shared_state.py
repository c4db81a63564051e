"""What sharing state through Redis costs per call: the WeChat token read and the Telegram
limiter's admission, against the in-memory token cache and no limiter. Prints medians.

    eval "$(tests/services/redis.sh start)"; python bench/shared_state.py; tests/services/redis.sh stop
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

# bench/inference.py would shadow the `inference` package when run as a script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from redis.asyncio import Redis  # noqa: E402

from bot.platforms.wechat.tokens import MemoryTokenStore  # noqa: E402
from bot.safeguards.pseudonym import Pseudonymizer  # noqa: E402
from bot.scale.ratelimit import Limit, RedisRateLimiter  # noqa: E402
from bot.scale.redis_tokens import RedisTokenStore  # noqa: E402
from bot.scale.seal import BrokerSealer  # noqa: E402

ROUNDS, CALLS = 7, 500
SECRET = b"b" * 64


async def fetch() -> tuple[str, float]:
    return "ACCESS_TOKEN_bench_0123456789abcdef", 7200.0


async def ok() -> bool:
    return True


async def per_call(action) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        await action()
    return (time.perf_counter() - start) / CALLS * 1e6  # microseconds


async def main() -> None:
    url = os.environ.get("DARKROOM_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    redis = Redis.from_url(url.rsplit("/", 1)[0] + "/15")
    await redis.flushdb()
    memory, shared = MemoryTokenStore(), RedisTokenStore(redis, BrokerSealer(SECRET))
    limiter = RedisRateLimiter(redis, Pseudonymizer(SECRET), overall=Limit(10**9, 1.0), per_group=Limit(10**9, 1.0))
    results: dict[str, list[float]] = {k: [] for k in ("token: memory", "token: redis", "send: no limiter", "send: redis limiter, group")}
    for _ in range(ROUNDS):  # interleaved, so that machine noise hits every variant alike
        results["token: memory"].append(await per_call(lambda: memory.token(fetch)))
        results["token: redis"].append(await per_call(lambda: shared.token(fetch)))
        results["send: no limiter"].append(await per_call(ok))
        results["send: redis limiter, group"].append(
            await per_call(lambda: limiter.process_request(ok, (), {}, "sendMessage", {"chat_id": -1001}, None))
        )
    for name, values in results.items():
        print(f"{name:28s} median {statistics.median(values):8.1f} µs/call  (min {min(values):.1f}, max {max(values):.1f}; {ROUNDS}x{CALLS})")
    await redis.flushdb()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
