"""The front's side of scale-out: hand each job to the `darkroom worker`s and await its sealed
outcome. The front (`darkroom run`) stays the scheduler: its fair queue decides who is next, and
a job's "work" becomes "send a task and await its sealed outcome". At most
DARKROOM_WORKER_SLOTS jobs are out at once, so queue positions stay true.
"""

from __future__ import annotations

import asyncio
import logging
import time

from bot.scale.protocol import (
    BLPOP_WAIT,
    CLAIM_TTL,
    LIVE_GRACE,
    QUEUE,
    REVOKED,
    TASK,
    WORKER_KEYS,
    BrokerSeal,
    celery_app,
    claim_key,
    job_id,
    live_key,
    result_key,
)
from bot.scale.protocol import redis_client as connect_redis
from bot.settings import Settings
from handlers import pipeline
from handlers.pipeline import Outcome, OutcomeKind, StyleJob
from handlers.ports import DeliveryFailed

log = logging.getLogger("darkroom.workers")
SEND_TIMEOUT = 5.0  # seconds to hand a task to the broker before the person is told "busy"
LATE_GRACE = 60.0  # a job that timed out while a worker was delivering: wait this long for where it landed


class RemoteStyler:
    """The front's side: hand the job to the workers and await its sealed outcome."""

    keeps_inputs = False  # nothing of a photo stays in the front

    def __init__(self, settings: Settings, app=None, redis_client=None) -> None:
        self.settings = settings
        self.app = app or celery_app(settings)
        self.redis = redis_client or connect_redis(settings.redis_url)
        self.seal = BrokerSeal(settings.secret)
        self._background: set[asyncio.Task] = set()

    async def style(self, work: StyleJob, platform, held, on_upload) -> Outcome:
        pipeline.release(held, [])  # cannot travel; with a broker the photos are fetched by reference
        job = job_id(self.settings.secret, work.key)
        # The deadline travels sealed: a task replayed after it is refused, whatever Redis forgot.
        deadline = time.time() + self.settings.job_timeout
        blob = self.seal.seal(job, {"work": work.to_dict(), "deadline": deadline})
        try:
            try:
                live = self.settings.job_timeout + LATE_GRACE + LIVE_GRACE
                await asyncio.wait_for(self.redis.set(live_key(job), b"1", ex=int(live)), timeout=SEND_TIMEOUT)
                await asyncio.wait_for(asyncio.to_thread(self._send, job, blob), timeout=SEND_TIMEOUT)
                log.debug("handed a job to the workers")
            except asyncio.CancelledError:
                raise  # erased while the task was being handed over: revoked below all the same
            except Exception as exc:
                log.warning("could not hand a job to the workers (%s): is the broker running?", type(exc).__name__)
                return Outcome(OutcomeKind.BUSY)
            outcome = await self._outcome(job, self.settings.job_timeout)
            if outcome is None and not await self._still_live(job):
                # Redis restarted empty (no persistence): the task and its live mark are gone,
                # so no worker will run it. Say so now rather than after the whole timeout.
                log.warning("a job's task was lost with Redis (restarted?); the person is asked to send it again")
                self._spawn(self._forget(job))
                return Outcome(OutcomeKind.LOST)
        except asyncio.CancelledError:
            # Erased (or shutting down): stop the job, and if a worker is already delivering,
            # hand the front where the photo landed so it can take it back (photos.withdraw).
            upload = asyncio.get_running_loop().create_future()
            upload.add_done_callback(lambda f: f.cancelled() or f.exception())
            on_upload(upload)
            self._spawn(self._revoke(job, upload))
            raise
        if outcome is not None:
            self._spawn(self._forget(job))
            return outcome
        if await self._claim_revoked(job):
            log.warning("a job got no answer from the workers in %ds; the person is asked to send it again", self.settings.job_timeout)
            self._spawn(self._control_revoke(job))
            self._spawn(self._forget(job))
            return Outcome(OutcomeKind.LOST)
        outcome = await self._outcome(job, LATE_GRACE)
        self._spawn(self._forget(job))
        return outcome or Outcome(OutcomeKind.LOST)

    def _send(self, job: str, blob: str) -> None:
        self.app.send_task(
            TASK,
            args=[blob],
            task_id=job,
            queue=QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
        )

    async def _outcome(self, job: str, timeout: float, watch_live: bool = True) -> Outcome | None:
        """Wait for the job's sealed outcome; a lost connection to Redis is retried until the
        deadline. None: no outcome in time, or the job's live mark vanished (Redis restarted)."""
        deadline = time.monotonic() + timeout
        warned = False
        while (left := deadline - time.monotonic()) > 0:
            try:
                found = await self.redis.blpop([result_key(job)], timeout=max(1, min(BLPOP_WAIT, int(left))))
                if not found and watch_live and not await self.redis.exists(live_key(job)):
                    return None
            except (OSError, ConnectionError, TimeoutError) as exc:
                warned = warned or _warn("the front lost Redis while waiting for a job (%s); retrying", exc)
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            except Exception as exc:  # redis.exceptions.ConnectionError is not an OSError
                if "Connection" not in type(exc).__name__ and "Timeout" not in type(exc).__name__:
                    raise
                warned = warned or _warn("the front lost Redis while waiting for a job (%s); retrying", exc)
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            if found:
                blob = found[1]
                try:
                    outcome = Outcome.from_dict(self.seal.open(job, blob.decode() if isinstance(blob, bytes) else blob))
                except Exception as exc:
                    # Not written by a worker of this instance: the job is stopped, unless a
                    # worker is already delivering it (then its own outcome follows).
                    log.warning("a job's outcome in Redis does not open (%s); the job is stopped", type(exc).__name__)
                    if await self._claim_revoked(job):
                        self._spawn(self._control_revoke(job))
                        return Outcome(OutcomeKind.LOST, detail="garbage outcome")
                    continue
                log.debug("a job's outcome arrived")
                return outcome
        return None

    async def _still_live(self, job: str) -> bool:
        try:
            return bool(await self.redis.exists(live_key(job)))
        except Exception:
            return True  # cannot tell: the usual timeout path decides

    async def _forget(self, job: str) -> None:
        """The front waits no more: no worker may run or deliver this job from now on."""
        try:
            await self.redis.delete(live_key(job))
        except Exception as exc:
            log.warning("could not clear a job's live mark (%s); it expires on its own", type(exc).__name__)

    async def _claim_revoked(self, job: str) -> bool:
        """Mark the job revoked unless a worker is delivering it; True when the mark is ours."""
        try:
            return bool(await self.redis.set(claim_key(job), REVOKED, nx=True, ex=CLAIM_TTL))
        except Exception as exc:
            log.warning("could not mark a job revoked (%s)", type(exc).__name__)
            return True  # no Redis: no worker can claim it either

    async def _control_revoke(self, job: str) -> None:
        """Celery's revocation: a queued task is dropped, a running one terminated."""
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.app.control.revoke, job, terminate=True), timeout=SEND_TIMEOUT
            )
        except Exception as exc:
            log.warning("could not broadcast a revocation (%s)", type(exc).__name__)

    async def _revoke(self, job: str, upload: asyncio.Future) -> None:
        won = await self._claim_revoked(job)
        await self._forget(job)  # erased: a replay of this task is refused, even after a restart
        await self._control_revoke(job)
        if won:
            upload.set_exception(DeliveryFailed("revoked before delivery"))
            return
        outcome = await self._outcome(job, LATE_GRACE, watch_live=False)
        if outcome is None or outcome.sent is None:
            upload.set_exception(DeliveryFailed("no photo landed")) if outcome is not None else upload.set_result(None)
        else:
            upload.set_result(outcome.sent)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def workers(self) -> int:
        """How many worker processes announced themselves lately."""
        return (await self.capacity())[0]

    async def capacity(self) -> tuple[int, int]:
        """(styling processes that announced themselves lately, how many of them are free),
        from the workers' heartbeats: a worker started anywhere counts at its first beat."""
        names = [name async for name in self.redis.scan_iter(match=WORKER_KEYS, count=100)]
        beats = await self.redis.mget(names) if names else []
        return sum(1 for b in beats if b is not None), sum(1 for b in beats if b == b"1")

    async def broker_waiting(self) -> int:
        """Tasks in the broker that no worker has taken yet."""
        return int(await self.redis.llen(QUEUE))

    async def close(self) -> None:
        for task in list(self._background):
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
            except Exception:
                task.cancel()
        await self.redis.aclose()


def _warn(message: str, exc: BaseException) -> bool:
    log.warning(message, type(exc).__name__)
    return True
