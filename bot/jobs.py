"""The job queue: bounded, fair between people, cancellable per person.

* one job in flight per person, and at most `per_person` waiting;
* people take turns (round-robin), so ten photos from one person do not make everyone else wait
  behind all ten;
* a global bound past which people are told the bot is busy, and a per-person hourly limit on
  photos (an album counts each photo) that survives /delete_my_data: it is kept under a keyed
  hash of the pseudonym (a key made at start-up and never stored), so the counts cannot be tied
  to anyone after an erasure, and each bucket goes when its last photo is an hour old;
* each waiting job hears its position whenever it changes.

It knows nothing about photos: a job is any coroutine function.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from handlers.context import where
from handlers.ports import DropCallback, PositionCallback, QueueFull, RateLimited, ShuttingDown, TooManyPending, Work

log = logging.getLogger("darkroom.jobs")
HOUR = 3600.0


@dataclass(eq=False)
class Ticket:
    owner: str
    work: Work
    on_position: PositionCallback | None = None
    on_drop: DropCallback | None = None
    position: int = 0
    task: asyncio.Task | None = field(default=None, repr=False)


class FairQueue:
    def __init__(
        self,
        workers: int = 2,
        max_waiting: int = 100,
        per_person: int = 5,
        rate_per_hour: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self.per_person = per_person
        self.rate_per_hour = rate_per_hour
        self._clock = clock
        self._waiting: dict[str, deque[Ticket]] = {}
        self._rotation: deque[str] = deque()  # owners with waiting work, in turn order
        self._running: dict[str, Ticket] = {}
        # Photos accepted in the last hour, per keyed bucket (see _bucket), oldest first.
        self._recent: dict[bytes, deque[float]] = {}
        self._bucket_key = secrets.token_bytes(32)  # this process's only: buckets die with it
        self._last_purge = clock()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._callbacks: set[asyncio.Task] = set()
        self._closed = False
        self.stopping = False

    # -- the JobQueue port -------------------------------------------------------------------

    def submit(
        self,
        owner: str,
        work: Work,
        on_position: PositionCallback | None = None,
        on_drop: DropCallback | None = None,
        photos: int = 1,
    ) -> int:
        if self._closed:
            raise ShuttingDown()
        now = self._clock()
        self._purge(now)
        bucket = self._bucket(owner)
        recent = self._recent.get(bucket, deque())
        while recent and recent[0] <= now - HOUR:
            recent.popleft()
        # An album larger than the whole hourly allowance counts as the allowance. 0: counted
        # already (a style chosen from the photo's preview sheet, which counted it).
        photos = max(0, min(photos, self.rate_per_hour or photos))
        if self.rate_per_hour and len(recent) + photos > self.rate_per_hour:
            # Wait until enough of the oldest photos are an hour old to make room for these.
            freed_by = recent[len(recent) + photos - self.rate_per_hour - 1]
            raise RateLimited(retry_after=freed_by + HOUR - now)
        if self.pending(owner) >= self.per_person:
            raise TooManyPending()
        if self.waiting >= self.max_waiting:
            raise QueueFull()
        if self.rate_per_hour:
            recent.extend([now] * photos)
            self._recent[bucket] = recent
        ticket = Ticket(owner, work, on_position, on_drop)
        self._waiting.setdefault(owner, deque()).append(ticket)
        if owner not in self._rotation:
            self._rotation.append(owner)
        self._renumber(announce_to=ticket)
        self._wakeup.set()
        return ticket.position

    def cancel_owner(self, owner: str) -> int:
        """Cancel every job of ``owner``. Their hourly count stays: erasing one's data is not a
        way round the limit (and the count names no one, see _bucket)."""
        cancelled = len(self._waiting.pop(owner, ()))
        if owner in self._rotation:
            self._rotation.remove(owner)
        running = self._running.get(owner)
        if running is not None and running.task is not None and not running.task.done():
            running.task.cancel()
            cancelled += 1
        if cancelled:
            self._renumber()
        return cancelled

    def _bucket(self, owner: str) -> bytes:
        """The rate-limit key of ``owner``: an HMAC under a random key that only this process
        holds, in memory. It is not the pseudonym and cannot be turned back into it; only a
        new message from the same person finds the same bucket again."""
        return hmac.new(self._bucket_key, owner.encode(), hashlib.sha256).digest()

    def _purge(self, now: float, every: float = 60.0) -> None:
        """Drop the buckets whose newest photo is more than an hour old."""
        if now - self._last_purge < every:
            return
        self._last_purge = now
        for bucket in [b for b, recent in self._recent.items() if not recent or recent[-1] <= now - HOUR]:
            del self._recent[bucket]

    @property
    def buckets(self) -> int:
        """How many rate-limit buckets are held (for tests and the health check)."""
        return len(self._recent)

    def pending(self, owner: str) -> int:
        return len(self._waiting.get(owner, ())) + (1 if owner in self._running else 0)

    # -- state -----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @property
    def running(self) -> int:
        return len(self._running)

    def order(self) -> list[Ticket]:
        """Waiting tickets in the order they will start: each person's turn in rotation."""
        queues = [list(self._waiting[o]) for o in self._rotation]
        order: list[Ticket] = []
        depth = 0
        while True:
            row = [q[depth] for q in queues if len(q) > depth]
            if not row:
                return order
            order += row
            depth += 1

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self._closed = False
        self._tasks = [asyncio.create_task(self._worker(), name=f"darkroom-worker-{i}") for i in range(self.workers)]

    async def stop(self, grace: float = 10.0, notice_timeout: float = 3.0) -> list[str]:
        """Stop taking work, drop what waits (telling those people, all at once, for at most
        ``notice_timeout`` seconds), give running jobs ``grace`` seconds, then cancel them.
        Returns the owners whose jobs did not finish (so they can be told)."""
        self._closed = True
        dropped = [t for q in self._waiting.values() for t in q]
        affected = [t.owner for t in dropped]
        self._waiting.clear()
        self._rotation.clear()
        notices = [asyncio.ensure_future(t.on_drop()) for t in dropped if t.on_drop is not None]
        running = [t.task for t in self._running.values() if t.task is not None]
        loop = asyncio.get_running_loop()
        begun = loop.time()
        pending: set[asyncio.Task] = set()
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
        if notices:
            done, late = await asyncio.wait(notices, timeout=max(0.0, begun + notice_timeout - loop.time()))
            for task in late:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("could not tell a person their job was dropped: %s", type(task.exception()).__name__)
            if late:
                log.warning("could not tell %d person(s) in time that their job was dropped", len(late))
        if pending:
            self.stopping = True  # jobs cancelled from here on apologise before they end
            affected += [t.owner for t in self._running.values() if t.task in pending]
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=notice_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        return affected

    def resize(self, workers: int) -> None:
        """How many jobs may run at once from now on (scaled out, the workers' heartbeats
        decide): more start at once; when fewer, the extra ones end as their jobs finish."""
        self.workers = max(1, workers)
        if self._closed or not self._tasks:
            return
        self._tasks = [t for t in self._tasks if not t.done()]
        while len(self._tasks) < self.workers:
            self._tasks.append(asyncio.create_task(self._worker(), name=f"darkroom-worker-{len(self._tasks)}"))
        self._wakeup.set()  # idle ones look again: the extra ones end

    async def _worker(self) -> None:
        while True:
            if len(self._tasks) > self.workers and (me := asyncio.current_task()) in self._tasks:
                self._tasks.remove(me)  # resized down: between jobs, this one ends
                return
            ticket = self._next()
            if ticket is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._running[ticket.owner] = ticket
            self._renumber()
            ticket.task = asyncio.ensure_future(ticket.work())  # a coroutine: a task, as create_task
            try:
                await asyncio.wait([ticket.task])  # returns (never raises) when the job is cancelled
                exc = None if ticket.task.cancelled() else ticket.task.exception()
                if exc is not None:
                    log.error("a job failed: %s at %s", type(exc).__name__, where(exc))
            except asyncio.CancelledError:
                ticket.task.cancel()
                raise
            finally:
                if self._running.get(ticket.owner) is ticket:
                    del self._running[ticket.owner]
                self._wakeup.set()

    def _next(self) -> Ticket | None:
        for _ in range(len(self._rotation)):
            owner = self._rotation[0]
            self._rotation.rotate(-1)
            if owner in self._running:
                continue  # one job in flight per person
            queue = self._waiting[owner]
            ticket = queue.popleft()
            if not queue:
                del self._waiting[owner]
                self._rotation.remove(owner)
            return ticket
        return None

    def _renumber(self, announce_to: Ticket | None = None) -> None:
        """Give every waiting ticket its position; tell those whose position changed."""
        for index, ticket in enumerate(self.order(), start=1):
            if ticket.position != index:
                ticket.position = index
                if ticket.on_position is not None and ticket is not announce_to:
                    self._callback(ticket.on_position(index))

    def _callback(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)
