"""Tests marked `redis` run against a real redis-server (tests/services/redis.sh start exports
DARKROOM_TEST_REDIS_URL). Without one they are skipped, except in CI (CI=true), where a missing
server fails them: a proof that silently skips proves nothing."""

from __future__ import annotations

import itertools
import os
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV = "DARKROOM_TEST_REDIS_URL"


def _own_databases() -> range:
    """Database 0 is left alone; each test gets its own index. Under pytest-xdist each worker
    takes its own share of 1..15, so that two tests running at once never share a database."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return range(1 + int(worker.removeprefix("gw")) % 15, 16, min(count, 15))


_databases = itertools.cycle(_own_databases())


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("redis") is None or os.environ.get(ENV):
        return
    reason = f'no test Redis: {ENV} is not set (run: eval "$(tests/services/redis.sh start)")'
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
    pytest.skip(reason)


def with_database(url: str, index: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{index}", parts.query, parts.fragment))


@pytest.fixture
def redis_url() -> str:
    """A URL of an empty database of the test Redis, emptied again after the test."""
    from redis import Redis

    url = with_database(os.environ[ENV], next(_databases))
    client = Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
