"""The fair queue: bounded, round-robin between people, one job in flight per person."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs import FairQueue
from handlers.ports import QueueFull, RateLimited, ShuttingDown, TooManyPending


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorder(order: list[str], name: str, gate: asyncio.Event | None = None):
    async def work() -> None:
        if gate is not None:
            await gate.wait()
        order.append(name)
        await asyncio.sleep(0)

    return work


async def test_people_take_turns_instead_of_waiting_behind_one_persons_ten_photos():
    queue = FairQueue(workers=1, max_waiting=100, per_person=20, rate_per_hour=0)
    order: list[str] = []
    gate = asyncio.Event()
    queue.submit("blocker", recorder(order, "blocker", gate))
    queue.start()
    await asyncio.sleep(0.01)  # the blocker is running
    for i in range(10):
        queue.submit("alice", recorder(order, f"alice{i}"))
    queue.submit("bob", recorder(order, "bob"))
    queue.submit("carol", recorder(order, "carol"))
    assert [t.owner for t in queue.order()][:4] == ["alice", "bob", "carol", "alice"]
    gate.set()
    while queue.waiting or queue.running:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert order[:4] == ["blocker", "alice0", "bob", "carol"]
    assert order[4:] == [f"alice{i}" for i in range(1, 10)]


async def test_one_job_in_flight_per_person_even_with_idle_workers():
    queue = FairQueue(workers=3, max_waiting=100, per_person=10, rate_per_hour=0)
    running: list[str] = []
    peak = 0
    gate = asyncio.Event()

    def job(name):
        async def work():
            nonlocal peak
            running.append(name)
            peak = max(peak, len(running))
            await gate.wait()
            running.remove(name)

        return work

    for i in range(3):
        queue.submit("alice", job(f"a{i}"))
    queue.start()
    await asyncio.sleep(0.05)
    assert running == ["a0"] and queue.running == 1
    gate.set()
    while queue.waiting or queue.running:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert peak == 1


async def test_positions_are_announced_when_they_change():
    queue = FairQueue(workers=1, max_waiting=100, per_person=10, rate_per_hour=0)
    gate = asyncio.Event()
    seen: dict[str, list[int]] = {"bob": [], "carol": []}

    def announce(name):
        async def on_position(position: int) -> None:
            seen[name].append(position)

        return on_position

    queue.submit("alice", recorder([], "a", gate))
    queue.start()
    await asyncio.sleep(0.01)
    assert queue.submit("bob", recorder([], "b"), announce("bob")) == 1
    assert queue.submit("carol", recorder([], "c"), announce("carol")) == 2
    gate.set()
    while queue.waiting or queue.running:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert seen["carol"] == [1]  # moved up once bob started
    assert seen["bob"] == []  # bob learnt his position from submit and then started


async def test_global_bound_says_busy():
    queue = FairQueue(workers=1, max_waiting=3, per_person=10, rate_per_hour=0)
    for i in range(3):
        queue.submit(f"p{i}", recorder([], "x"))
    with pytest.raises(QueueFull):
        queue.submit("late", recorder([], "x"))


async def test_per_person_pending_limit():
    queue = FairQueue(workers=1, max_waiting=100, per_person=2, rate_per_hour=0)
    queue.submit("alice", recorder([], "x"))
    queue.submit("alice", recorder([], "x"))
    with pytest.raises(TooManyPending):
        queue.submit("alice", recorder([], "x"))
    queue.submit("bob", recorder([], "x"))


async def test_hourly_rate_limit_tells_when_to_try_again():
    clock = Clock()
    queue = FairQueue(workers=1, max_waiting=100, per_person=100, rate_per_hour=3, clock=clock)
    for _ in range(3):
        queue.submit("alice", recorder([], "x"))
        clock.now += 60
    with pytest.raises(RateLimited) as refused:
        queue.submit("alice", recorder([], "x"))
    assert refused.value.retry_after == pytest.approx(3600 - 180)
    clock.now += 3600 - 180 + 1
    queue.submit("alice", recorder([], "x"))  # the first one has left the window


async def test_cancel_owner_cancels_waiting_and_running_but_not_others():
    queue = FairQueue(workers=1, max_waiting=100, per_person=10, rate_per_hour=0)
    order: list[str] = []
    started = asyncio.Event()

    async def long_job():
        started.set()
        await asyncio.sleep(30)
        order.append("never")

    queue.submit("alice", long_job)
    queue.submit("alice", recorder(order, "alice2"))
    queue.submit("bob", recorder(order, "bob"))
    queue.start()
    await asyncio.wait_for(started.wait(), 2)
    assert queue.cancel_owner("alice") == 2
    while queue.waiting or queue.running:
        await asyncio.sleep(0.01)
    await queue.stop()
    assert order == ["bob"]
    assert queue.pending("alice") == 0


async def test_stop_drops_waiting_jobs_tells_them_and_cancels_overrunning_ones():
    queue = FairQueue(workers=1, max_waiting=100, per_person=10, rate_per_hour=0)
    told: list[str] = []
    started = asyncio.Event()
    stopping_seen: list[bool] = []

    async def stuck():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopping_seen.append(queue.stopping)
            raise

    async def tell():
        told.append("bob")

    queue.submit("alice", stuck)
    queue.submit("bob", recorder([], "b"), on_drop=tell)
    queue.start()
    await asyncio.wait_for(started.wait(), 2)
    affected = await queue.stop(grace=0.2)
    assert told == ["bob"]
    assert sorted(affected) == ["alice", "bob"]
    assert stopping_seen == [True]
    with pytest.raises(ShuttingDown):
        queue.submit("carol", recorder([], "c"))


async def test_every_photo_of_an_album_counts_against_the_hourly_limit():
    clock = Clock()
    queue = FairQueue(workers=1, max_waiting=100, per_person=100, rate_per_hour=10, clock=clock)
    queue.submit("alice", recorder([], "album1"), photos=4)
    clock.now += 60
    queue.submit("alice", recorder([], "album2"), photos=4)
    with pytest.raises(RateLimited) as refused:
        queue.submit("alice", recorder([], "album3"), photos=4)  # 12 > 10
    assert refused.value.retry_after == pytest.approx(3600 - 60)  # room comes when the first album is an hour old
    queue.submit("alice", recorder([], "two more"), photos=2)  # exactly 10
    with pytest.raises(RateLimited):
        queue.submit("alice", recorder([], "one more"))
    # An album larger than the whole allowance is the whole allowance, not refused forever.
    queue.submit("bob", recorder([], "huge"), photos=50)
    assert len(queue._recent[queue._bucket("bob")]) == 10


async def test_the_hourly_count_survives_cancelling_a_persons_jobs():
    """/delete_my_data cancels everything of the person; it does not give them a fresh hour."""
    clock = Clock()
    queue = FairQueue(workers=1, max_waiting=100, per_person=100, rate_per_hour=3, clock=clock)
    for _ in range(3):
        queue.submit("alice", recorder([], "x"))
    assert queue.cancel_owner("alice") == 3
    with pytest.raises(RateLimited):
        queue.submit("alice", recorder([], "after erasure"))
    clock.now += 3601
    queue.submit("alice", recorder([], "an hour later"))


async def test_the_limiters_buckets_name_no_one_and_expire_after_the_hour():
    clock = Clock()
    queue = FairQueue(workers=1, max_waiting=100, per_person=100, rate_per_hour=3, clock=clock)
    other = FairQueue(workers=1, max_waiting=100, per_person=100, rate_per_hour=3, clock=clock)
    pseudonym = "pseudonym-of-alice-0123456789abcdef"
    queue.submit(pseudonym, recorder([], "x"))
    (bucket,) = queue._recent
    assert pseudonym.encode() not in bucket and bucket != pseudonym
    queue.cancel_owner(pseudonym)  # the erasure: the queue keeps the count, but not the name
    assert all(pseudonym not in repr(v) for v in vars(queue).values())
    assert other._bucket(pseudonym) != bucket  # keyed per process: nothing to look up elsewhere
    clock.now += 1800
    queue.submit("bob", recorder([], "y"))
    assert queue.buckets == 2
    clock.now += 1801  # alice's photo is over an hour old; bob's is not
    queue.submit("carol", recorder([], "z"))
    assert queue.buckets == 2 and bucket not in queue._recent


async def test_resize_changes_how_many_jobs_run_at_once_without_a_restart():
    queue = FairQueue(workers=1, max_waiting=100, per_person=10, rate_per_hour=0)
    gate = asyncio.Event()
    order: list[str] = []
    for person in ("a", "b", "c"):
        queue.submit(person, recorder(order, person, gate))
    queue.start()
    await asyncio.sleep(0.05)
    assert queue.running == 1
    queue.resize(3)  # two more styling processes announced themselves
    await asyncio.sleep(0.05)
    assert queue.running == 3
    queue.resize(1)  # they went away: the extra slots end once their jobs are done
    gate.set()
    await asyncio.sleep(0.05)
    assert len(queue._tasks) == 1
    gate.clear()
    for person in ("d", "e"):
        queue.submit(person, recorder(order, person, gate))
    await asyncio.sleep(0.05)
    assert queue.running == 1
    gate.set()
    await queue.stop()
