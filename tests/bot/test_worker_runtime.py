"""The worker's side of a task (bot/scale/worker.py WorkerRuntime) against a real Redis, without
an engine: default-deny (a task runs only while the front's live mark exists and before its
sealed deadline), an outcome always sent back, and a Redis restart survived by the next job."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from bot.scale.front import RemoteStyler  # noqa: F401  (the same protocol both sides)
from bot.scale.protocol import CLAIM_IF_LIVE, BrokerSeal, claim_key, job_id, live_key, redis_client, result_key
from bot.scale.worker import WorkerRuntime
from bot.settings import Settings
from handlers.pipeline import Outcome, OutcomeKind
from tests.bot.test_remote_styler import redis_url as redis_url  # noqa: F401  (a private redis-server per test)
from tests.bot.test_remote_styler import work
from tests.conftest import SECRET

pytestmark = pytest.mark.redis


class Refused(Exception):
    pass


def runtime(url: str) -> WorkerRuntime:
    """A WorkerRuntime without its engine or heartbeat: only what a task's bookkeeping uses."""
    worker = WorkerRuntime.__new__(WorkerRuntime)
    worker.settings = Settings(secret=SECRET.encode(), broker_url=url, redis_url=url, job_timeout=30)
    worker.metrics = None
    worker.seal = BrokerSeal(SECRET.encode())
    worker.redis = redis_client(url)
    worker._claim_if_live = worker.redis.register_script(CLAIM_IF_LIVE)
    worker.platforms = {}
    worker.styled = []

    async def platform(name):  # reached only by a task that may run: it stands for the styling
        worker.styled.append(name)
        raise Refused("the platform client would not start")

    worker.platform = platform
    return worker


def task(key: str, deadline: float | None = None) -> tuple[str, str]:
    job = job_id(SECRET.encode(), key)
    blob = BrokerSeal(SECRET.encode()).seal(job, {"work": work(key).to_dict(), "deadline": deadline or time.time() + 30})
    return job, blob


def outcome(url: str, job: str) -> Outcome | None:
    found = Redis.from_url(url).lpop(result_key(job))
    return None if found is None else Outcome.from_dict(BrokerSeal(SECRET.encode()).open(job, found.decode()))


async def test_a_task_without_a_live_mark_is_refused(redis_url):
    worker = runtime(redis_url)
    job, blob = task("r1")  # never sent by a front, or a replay after the front stopped waiting
    await worker._run(job, blob)
    assert worker.styled == [] and outcome(redis_url, job).kind == OutcomeKind.CLAIMED


async def test_a_task_past_its_sealed_deadline_is_refused_even_when_live(redis_url):
    worker = runtime(redis_url)
    job, blob = task("r2", deadline=time.time() - 1)
    Redis.from_url(redis_url).set(live_key(job), b"1")
    await worker._run(job, blob)
    assert worker.styled == [] and outcome(redis_url, job).kind == OutcomeKind.CLAIMED


async def test_a_live_task_runs_and_a_failure_still_reports_an_outcome(redis_url):
    worker = runtime(redis_url)
    job, blob = task("r3")
    Redis.from_url(redis_url).set(live_key(job), b"1")
    await worker._run(job, blob)
    assert worker.styled == ["telegram"]
    assert outcome(redis_url, job).kind == OutcomeKind.FAILED  # the front hears now, not after its timeout


async def test_delivery_is_claimed_only_while_the_job_is_live(redis_url):
    worker = runtime(redis_url)
    job, _ = task("r4")
    assert not await worker._claim(job)  # erased (or Redis restarted): no delivery
    assert Redis.from_url(redis_url).get(claim_key(job)) is None
    Redis.from_url(redis_url).set(live_key(job), b"1")
    assert await worker._claim(job) and not await worker._claim(job)  # once


async def test_the_first_job_after_a_redis_restart_is_run(redis_url, tmp_path):
    import subprocess

    worker = runtime(redis_url)
    job, blob = task("r5")
    await worker._run(job, blob)  # the client now holds a connection
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    Redis.from_url(redis_url).shutdown(nosave=True)
    server = subprocess.Popen(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                Redis.from_url(redis_url).ping()
                break
            except Exception:
                time.sleep(0.05)
        job, blob = task("r6")
        Redis.from_url(redis_url).set(live_key(job), b"1")
        await worker._run(job, blob)  # its first command meets the dead connection
        assert worker.styled == ["telegram"] and outcome(redis_url, job).kind == OutcomeKind.FAILED
    finally:
        server.kill()
        server.wait()
    await worker.redis.aclose()
