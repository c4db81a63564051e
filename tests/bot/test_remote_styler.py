"""The front's side of scale-out (bot/scale/front.py RemoteStyler) against a real Redis, with this
test playing the worker: outcomes come back sealed, a job nobody answers ends as "send it again"
and stays revoked, and an erasure that loses the delivery claim learns where the photo landed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time

import pytest
from redis import Redis

from bot.scale.front import RemoteStyler
from bot.scale.protocol import BLPOP_WAIT, DELIVERING, REVOKED, BrokerSeal, claim_key, job_id, live_key, result_key
from bot.settings import Settings
from handlers import pipeline
from handlers.events import Address, MessageRef, PhotoRef
from handlers.pipeline import Outcome, StyleJob
from inference import StyleRequest
from tests.conftest import SECRET

pytestmark = pytest.mark.redis
CHAT = Address("telegram", "424242")


@pytest.fixture
def redis_url(tmp_path):
    if not os.environ.get("DARKROOM_TEST_REDIS_URL"):
        if os.environ.get("CI") == "true":
            pytest.fail("DARKROOM_TEST_REDIS_URL is not set (start tests/services/redis.sh)")
        pytest.skip("Redis tests need DARKROOM_TEST_REDIS_URL (eval \"$(tests/services/redis.sh)\")")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            Redis.from_url(url).ping()
            break
        except Exception:
            time.sleep(0.05)
    yield url
    server.send_signal(signal.SIGKILL)
    server.wait()


def work(key: str) -> StyleJob:
    return StyleJob(key=key, chat=CHAT, photos=(PhotoRef("FILE-ID-123"),), request=StyleRequest("ink"), caption="Ink")


@pytest.fixture
async def styler(redis_url):
    settings = Settings(secret=SECRET.encode(), broker_url=redis_url, redis_url=redis_url, job_timeout=2)
    remote = RemoteStyler(settings)
    yield remote
    await remote.close()


def answer(redis_url: str, key: str, outcome: Outcome) -> None:
    """What a worker does at the end of a job."""
    job = job_id(SECRET.encode(), key)
    Redis.from_url(redis_url).rpush(result_key(job), BrokerSeal(SECRET.encode()).seal(job, outcome.to_dict()))


async def test_the_task_is_one_sealed_blob_and_the_outcome_comes_back(styler, redis_url):
    client = Redis.from_url(redis_url)
    sent = MessageRef(CHAT, "77")
    running = asyncio.create_task(styler.style(work("k1"), None, [], lambda upload: None))
    for _ in range(100):
        queued = client.lrange("darkroom", 0, -1)
        if queued:
            break
        await asyncio.sleep(0.02)
    assert len(queued) == 1 and b"424242" not in queued[0] and b"FILE-ID-123" not in queued[0]
    answer(redis_url, "k1", Outcome(pipeline.OutcomeKind.DONE, styled=1, sent=sent))
    outcome = await running
    assert (outcome.kind, outcome.sent) == (pipeline.OutcomeKind.DONE, sent)


async def test_no_answer_in_time_asks_to_send_again_and_the_job_stays_revoked(styler, redis_url):
    outcome = await styler.style(work("k2"), None, [], lambda upload: None)
    assert outcome.kind == pipeline.OutcomeKind.LOST
    assert Redis.from_url(redis_url).get(claim_key(job_id(SECRET.encode(), "k2"))) == REVOKED


async def test_erasure_after_the_worker_claimed_delivery_learns_where_the_photo_landed(styler, redis_url):
    uploads: list[asyncio.Future] = []
    running = asyncio.create_task(styler.style(work("k3"), None, [], uploads.append))
    await asyncio.sleep(0.3)
    job = job_id(SECRET.encode(), "k3")
    Redis.from_url(redis_url).set(claim_key(job), DELIVERING)  # the worker won the claim
    running.cancel()  # /delete_my_data
    with pytest.raises(asyncio.CancelledError):
        await running
    landed = MessageRef(CHAT, "88")
    answer(redis_url, "k3", Outcome(pipeline.OutcomeKind.DONE, styled=1, sent=landed))
    assert await asyncio.wait_for(uploads[0], timeout=10) == landed  # photos.withdraw deletes it


async def test_erasure_before_delivery_wins_the_claim(styler, redis_url):
    uploads: list[asyncio.Future] = []
    running = asyncio.create_task(styler.style(work("k4"), None, [], uploads.append))
    await asyncio.sleep(0.3)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(Exception):
        await asyncio.wait_for(uploads[0], timeout=10)  # nothing to take back
    assert Redis.from_url(redis_url).get(claim_key(job_id(SECRET.encode(), "k4"))) == REVOKED


async def test_no_broker_means_busy(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    url = f"redis://127.0.0.1:{port}/0"
    if not os.environ.get("DARKROOM_TEST_REDIS_URL"):
        pytest.skip("Redis tests need DARKROOM_TEST_REDIS_URL")
    remote = RemoteStyler(Settings(secret=SECRET.encode(), broker_url=url, redis_url=url, job_timeout=5))
    started = time.monotonic()
    outcome = await remote.style(work("k5"), None, [], lambda upload: None)
    assert outcome.kind == pipeline.OutcomeKind.BUSY and time.monotonic() - started < 10
    await remote.close()


def live(redis_url: str, key: str) -> bool:
    return bool(Redis.from_url(redis_url).exists(live_key(job_id(SECRET.encode(), key))))


async def wait_for_task(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    for _ in range(200):
        if client.lrange("darkroom", 0, -1):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no task was sent")


async def test_a_job_is_live_while_the_front_waits_and_not_after(styler, redis_url):
    running = asyncio.create_task(styler.style(work("k6"), None, [], lambda upload: None))
    await wait_for_task(redis_url)
    assert live(redis_url, "k6")  # a worker may run it now
    answer(redis_url, "k6", Outcome(pipeline.OutcomeKind.DONE, styled=1))
    assert (await running).kind == pipeline.OutcomeKind.DONE
    await asyncio.sleep(0.2)
    assert not live(redis_url, "k6")  # answered: a replay of the task is refused


async def test_erasure_ends_the_live_mark(redis_url):
    # A long job timeout: with the fixture's 2 s, a loaded machine timed the job out before the
    # test could cancel it.
    remote = RemoteStyler(Settings(secret=SECRET.encode(), broker_url=redis_url, redis_url=redis_url, job_timeout=60))
    try:
        running = asyncio.create_task(remote.style(work("k7"), None, [], lambda upload: None))
        await wait_for_task(redis_url)
        assert live(redis_url, "k7")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.sleep(0.5)
        assert not live(redis_url, "k7")
    finally:
        await remote.close()


async def test_a_live_mark_lost_with_redis_ends_the_wait_early(redis_url):
    remote = RemoteStyler(Settings(secret=SECRET.encode(), broker_url=redis_url, redis_url=redis_url, job_timeout=60))
    try:
        running = asyncio.create_task(remote.style(work("k8"), None, [], lambda upload: None))
        await wait_for_task(redis_url)
        started = time.monotonic()
        Redis.from_url(redis_url).flushall()  # what a restart of Redis without persistence leaves
        outcome = await asyncio.wait_for(running, timeout=30)
        assert outcome.kind == pipeline.OutcomeKind.LOST and time.monotonic() - started < 15
    finally:
        await remote.close()


async def test_garbage_in_the_result_key_stops_the_job_with_one_honest_answer(styler, redis_url, caplog):
    running = asyncio.create_task(styler.style(work("k9"), None, [], lambda upload: None))
    await wait_for_task(redis_url)
    job = job_id(SECRET.encode(), "k9")
    Redis.from_url(redis_url).rpush(result_key(job), b"not an outcome at all")
    outcome = await running
    assert outcome.kind == pipeline.OutcomeKind.LOST  # "the styling machine stopped...": send again
    assert Redis.from_url(redis_url).get(claim_key(job)) == REVOKED  # no worker delivers it now
    assert any("does not open" in r.getMessage() for r in caplog.records)


async def test_garbage_while_a_worker_delivers_changes_nothing(styler, redis_url):
    running = asyncio.create_task(styler.style(work("k10"), None, [], lambda upload: None))
    await wait_for_task(redis_url)
    job = job_id(SECRET.encode(), "k10")
    client = Redis.from_url(redis_url)
    client.set(claim_key(job), DELIVERING)  # the worker won the claim
    client.rpush(result_key(job), b"garbage")
    await asyncio.sleep(0.5)
    sent = MessageRef(CHAT, "99")
    answer(redis_url, "k10", Outcome(pipeline.OutcomeKind.DONE, styled=1, sent=sent))
    outcome = await running
    assert (outcome.kind, outcome.sent) == (pipeline.OutcomeKind.DONE, sent)


async def test_a_healthy_redis_is_not_reported_lost_while_a_job_waits(redis_url, caplog):
    """The BLPOP wait (5 s) must fit inside the socket timeout: redis-py's default is also 5 s,
    and each expiry dropped the connection and logged "the front lost Redis"."""
    remote = RemoteStyler(Settings(secret=SECRET.encode(), broker_url=redis_url, redis_url=redis_url, job_timeout=60))
    # The race is lost only now and then (the reply and the timeout both come at 5 s): check the
    # margin itself, then watch a wait longer than two BLPOPs.
    assert remote.redis.connection_pool.connection_kwargs["socket_timeout"] >= BLPOP_WAIT + 5
    try:
        running = asyncio.create_task(remote.style(work("k11"), None, [], lambda upload: None))
        await wait_for_task(redis_url)
        await asyncio.sleep(12)  # two whole BLPOP waits
        answer(redis_url, "k11", Outcome(pipeline.OutcomeKind.DONE, styled=1))
        assert (await running).kind == pipeline.OutcomeKind.DONE
    finally:
        await remote.close()
    assert not any("lost Redis" in r.getMessage() for r in caplog.records)
