"""From one box to many: the styling pipeline on `darkroom worker`s, through a Celery broker.

The front (`darkroom run`) stays the scheduler: its fair queue decides who is next, and a
job's "work" becomes "send a task and await its sealed outcome" (`RemoteStyler`). At most
DARKROOM_WORKER_SLOTS jobs are out at once, so queue positions stay true.

No photo bytes ever go through the broker. A task carries one opaque argument: the plain
`StyleJob` (the platform's photo references, the style request, the chat address, the caption)
sealed with AES-GCM under a key derived from the instance secret for this use only, bound to
the task id. The worker fetches the photo from the platform itself, styles it in memory, answers
the chat through the platform's API, zeroes everything, and pushes back a sealed `Outcome`.

Redis holds, per job and under a keyed hash of the job's random key (nothing of the person):
* ``darkroom:claim:<id>``: whoever sets it first (SET NX) answers for the job. A worker claims
  it right before delivering ("delivering"); an erasure or the front's timeout claims it to
  stop delivery ("revoked"). So a job run twice (a worker killed, the task delivered again)
  replies at most once, and an erasure either stops the reply or learns where it landed.
* ``darkroom:result:<id>``: the sealed outcome, a list the front waits on (BLPOP).
(Every key, Celery's own included, is described in bot/shared/keys.py; `darkroom audit --broker`
checks them.)
Celery's own result backend is off (`task_ignore_result`), and no events are sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from dataclasses import replace
from functools import partial

from handlers import pipeline
from handlers.pipeline import Outcome, OutcomeKind, StyleJob
from handlers.ports import DeliveryFailed

from .settings import Settings
from .shared.keys import QUEUE, TASK, Keys
from .storage import Sealer

log = logging.getLogger("darkroom.workers")

SEAL_LABEL = b"darkroom:broker-seal:v1"
CLAIM_TTL = 24 * 3600  # a claim outlives any redelivery of its task
RESULT_TTL = 600  # an outcome nobody collects goes on its own
SEND_TIMEOUT = 5.0  # seconds to hand a task to the broker before the person is told "busy"
LATE_GRACE = 60.0  # a job that timed out while a worker was delivering: wait this long for where it landed
WATCH_INTERVAL = 0.2  # how often a worker looks for its job's revocation mark
HEARTBEAT = 5.0  # worker processes announce themselves this often (the workers gauge)
REVOKED, DELIVERING = b"revoked", b"delivering"
ENGINE_LOAD_TIMEOUT = 300.0  # seconds a new pool process has to load its engine


def job_id(secret: bytes, key: str) -> str:
    """The task id and Redis key for a job: a keyed hash of its random key, nothing of the person."""
    return hmac.new(secret, b"darkroom:job:" + key.encode(), hashlib.sha256).hexdigest()[:40]


def claim_key(job: str) -> str:
    return Keys().claim(job)


def result_key(job: str) -> str:
    return Keys().result(job)


WORKER_KEYS = Keys().worker("*")


class BrokerSeal:
    """AES-GCM under a key of its own (derived from the instance secret with its own label),
    each blob bound to its task id: a blob moved to another task does not open."""

    def __init__(self, secret: bytes) -> None:
        self._sealer = Sealer(secret, SEAL_LABEL)

    def seal(self, job: str, value: dict) -> str:
        return base64.b64encode(self._sealer.seal(job, value)).decode()

    def open(self, job: str, blob: str) -> dict:
        return self._sealer.open(job, base64.b64decode(blob))


def celery_app(settings: Settings):
    from celery import Celery

    app = Celery("darkroom", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # Only JSON, and only the sealed blob in it.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Outcomes come back sealed through Redis (below): Celery stores no result, no args.
        result_backend=None,
        task_ignore_result=True,
        result_extended=False,
        task_track_started=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        # A worker killed mid-job: the task goes back to the queue and runs once more elsewhere.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.job_timeout + 30,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker that loses the broker keeps reconnecting
        broker_transport_options={"visibility_timeout": settings.job_timeout + 60},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Each pool process loads and chooses its engine before it reports up (seconds, more on a
        # busy machine); Celery's default 4 s would kill every replacement of a terminated process
        # before it is ready, and start another, forever.
        worker_proc_alive_timeout=ENGINE_LOAD_TIMEOUT,
    )
    return app


# -- the front ------------------------------------------------------------------------------------


class RemoteStyler:
    """The front's side: hand the job to the workers and await its sealed outcome."""

    keeps_inputs = False  # nothing of a photo stays in the front

    def __init__(self, settings: Settings, app=None, redis_client=None) -> None:
        from redis import asyncio as aioredis

        self.settings = settings
        self.app = app or celery_app(settings)
        self.redis = redis_client or aioredis.from_url(settings.redis_url, socket_connect_timeout=3, health_check_interval=10)
        self.seal = BrokerSeal(settings.secret)
        self._background: set[asyncio.Task] = set()

    async def style(self, work: StyleJob, platform, held, on_upload) -> Outcome:
        pipeline.release(held, [])  # cannot travel; with a broker the photos are fetched by reference
        job = job_id(self.settings.secret, work.key)
        blob = self.seal.seal(job, {"work": work.to_dict()})
        try:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._send, job, blob), timeout=SEND_TIMEOUT)
                log.debug("handed a job to the workers")
            except asyncio.CancelledError:
                raise  # erased while the task was being handed over: revoked below all the same
            except Exception as exc:
                log.warning("could not hand a job to the workers (%s): is the broker running?", type(exc).__name__)
                return Outcome(OutcomeKind.BUSY)
            outcome = await self._outcome(job, self.settings.job_timeout)
        except asyncio.CancelledError:
            # Erased (or shutting down): stop the job, and if a worker is already delivering,
            # hand the front where the photo landed so it can take it back (photos.withdraw).
            upload = asyncio.get_running_loop().create_future()
            upload.add_done_callback(lambda f: f.cancelled() or f.exception())
            on_upload(upload)
            self._spawn(self._revoke(job, upload))
            raise
        if outcome is not None:
            return outcome
        if await self._claim_revoked(job):
            log.warning("a job got no answer from the workers in %ds; the person is asked to send it again", self.settings.job_timeout)
            self._spawn(self._control_revoke(job))
            return Outcome(OutcomeKind.LOST)
        return await self._outcome(job, LATE_GRACE) or Outcome(OutcomeKind.LOST)

    def _send(self, job: str, blob: str) -> None:
        self.app.send_task(
            TASK,
            args=[blob],
            task_id=job,
            queue=QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
        )

    async def _outcome(self, job: str, timeout: float) -> Outcome | None:
        """Wait for the job's sealed outcome; a lost connection to Redis is retried until the deadline."""
        deadline = time.monotonic() + timeout
        warned = False
        while (left := deadline - time.monotonic()) > 0:
            try:
                found = await self.redis.blpop([result_key(job)], timeout=max(1, min(5, int(left))))
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
                log.debug("a job's outcome arrived")
                return Outcome.from_dict(self.seal.open(job, found[1].decode()))
        return None

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
        await self._control_revoke(job)
        if won:
            upload.set_exception(DeliveryFailed("revoked before delivery"))
            return
        outcome = await self._outcome(job, LATE_GRACE)
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
        count = 0
        async for _ in self.redis.scan_iter(match=WORKER_KEYS, count=100):
            count += 1
        return count

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


# -- the worker -----------------------------------------------------------------------------------


class WorkerRuntime:
    """One per worker process: its engine (loaded once), an event loop, the platforms' API
    clients and Redis. Each task runs `handlers.pipeline.style` on this loop."""

    def __init__(self, settings: Settings, metrics=None) -> None:
        from redis import asyncio as aioredis

        from inference import AsyncEngine, Engine

        from .app import engine_config

        self.settings = settings
        self.metrics = metrics
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.engine = Engine(engine_config(settings))
        self.engine.verify()  # refuses to work with a tampered model
        self.async_engine = AsyncEngine(self.engine)
        self.seal = BrokerSeal(settings.secret)
        self.redis = aioredis.from_url(settings.redis_url, socket_connect_timeout=3, health_check_interval=10)
        self.platforms: dict[str, object] = {}
        self.shared = None  # bot.shared.SharedState, on first use
        self.name = uuid.uuid4().hex  # announces this process (the workers gauge); nothing else
        self._beat = threading.Event()
        threading.Thread(target=self._heartbeat, name="darkroom-heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        from redis import Redis

        client = Redis.from_url(self.settings.redis_url, socket_connect_timeout=3)
        while True:
            try:
                client.set(Keys().worker(self.name), b"1", ex=int(HEARTBEAT * 3))
            except Exception:
                pass  # Redis is away; the next beat tries again
            if self._beat.wait(HEARTBEAT):
                return

    def run(self, job: str, blob: str) -> None:
        self.loop.run_until_complete(self._run(job, blob))

    async def platform(self, name: str):
        from .pseudonym import Pseudonymizer
        from .shared import connect as connect_shared_state

        if name not in self.platforms:
            pseudonymize = Pseudonymizer(self.settings.secret)
            if self.shared is None:
                # Every process of the bot shares one WeChat token (a new one expires the old)
                # and Telegram's global send limits: the workers too.
                self.shared = await connect_shared_state(self.settings, pseudonymize)
            if name == "telegram":
                from .telegram import TelegramPlatform

                # The adapter without its updater: this process only fetches and answers.
                settings = replace(self.settings, telegram_mode="webhook", telegram_webhook_url="-")
                limiter = self.shared.telegram_limiter() if self.shared else None
                platform = TelegramPlatform(settings, pseudonymize, None, rate_limiter=limiter)
                await platform.app.initialize()
            elif name == "wechat":
                from .wechat import WeChatPlatform

                # No callbacks come here (dispatch, replay guard: None); it fetches and answers.
                tokens = self.shared.wechat_tokens() if self.shared else None
                platform = WeChatPlatform(self.settings, pseudonymize, None, None, tokens=tokens)
                await platform.start()
            else:
                raise ValueError("unknown platform")
            self.platforms[name] = platform
        return self.platforms[name]

    async def _run(self, job: str, blob: str) -> None:
        started = time.monotonic()
        log.debug("job started")
        try:
            work = StyleJob.from_dict(self.seal.open(job, blob)["work"])
        except Exception as exc:  # not sealed by this instance: dropped, never run
            log.warning("refused a task that does not open with this instance's key (%s)", type(exc).__name__)
            return
        if await self.redis.get(claim_key(job)) is not None:
            outcome = Outcome(OutcomeKind.CLAIMED)  # erased while queued, or answered by an earlier run
        else:
            platform = await self.platform(work.chat.platform)
            running = asyncio.ensure_future(
                pipeline.style(work, platform, self.async_engine, claim=partial(self._claim, job))
            )
            watcher = asyncio.ensure_future(self._watch(job, running))
            try:
                outcome = await asyncio.wait_for(running, timeout=self.settings.job_timeout)
            except asyncio.CancelledError:
                outcome = Outcome(OutcomeKind.CLAIMED)  # revoked: stopped before it delivered
                log.info("a job was revoked while it ran; it was stopped")
            except asyncio.TimeoutError:
                outcome = Outcome(OutcomeKind.FAILED, detail="timeout")
            finally:
                watcher.cancel()
        if self.metrics is not None:
            self.metrics.observe(outcome, time.monotonic() - started)
        sealed = self.seal.seal(job, outcome.to_dict())
        async with self.redis.pipeline(transaction=True) as batch:
            batch.rpush(result_key(job), sealed)
            batch.expire(result_key(job), RESULT_TTL)
            await batch.execute()
        log.debug("job outcome sent")

    async def _claim(self, job: str) -> bool:
        return bool(await self.redis.set(claim_key(job), DELIVERING, nx=True, ex=CLAIM_TTL))

    async def _watch(self, job: str, running: asyncio.Future) -> None:
        """Stop the job (the engine's cancel hooks kill the decode, terminate the inference) the
        moment the front marks it revoked."""
        while not running.done():
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                if await self.redis.get(claim_key(job)) == REVOKED:
                    running.cancel()
                    return
            except Exception:
                pass


_runtime: WorkerRuntime | None = None


def build_worker_app(settings: Settings):
    """The Celery app of `darkroom worker`, with the styling task and per-process set-up."""
    from celery import signals

    app = celery_app(settings)

    @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def style_task(self, blob: str) -> None:
        runtime = _runtime or _start_runtime(settings)
        runtime.run(self.request.id, blob)

    @signals.worker_process_init.connect(weak=False)
    def _load_engine(**_) -> None:  # once per worker process, not per task
        _start_runtime(settings)

    @signals.worker_ready.connect(weak=False)
    def _ready(**_) -> None:  # Celery's own "ready." is withheld with all third-party log text
        log.info("worker ready: taking jobs from the queue")

    return app


def _start_runtime(settings: Settings) -> WorkerRuntime:
    global _runtime
    from . import heap

    heap.wipe_freed_memory()
    metrics = None
    if settings.worker_metrics_port:
        from .metrics import WorkerMetrics

        metrics = WorkerMetrics()
    _runtime = WorkerRuntime(settings, metrics)
    if metrics is not None:
        from billiard.process import current_process

        # Served once the engine is loaded: a process whose /metrics answers can take a job.
        index = getattr(current_process(), "index", 0) or 0
        metrics.serve_on(settings.worker_metrics_port + index)
    heap.freeze_start_up_objects()  # before the first task: per-job collections skip all this
    log.info("worker process %d ready (engine loaded)", os.getpid())
    return _runtime


def main(settings: Settings) -> int:
    app = build_worker_app(settings)
    argv = [
        "worker",
        f"--loglevel={settings.log_level}",
        f"--concurrency={settings.worker_concurrency}",
        "--pool=prefork",
        f"--queues={QUEUE}",
        "--without-gossip",
        "--without-mingle",
        f"--hostname=darkroom-{uuid.uuid4().hex[:8]}@%h",
    ]
    app.worker_main(argv)
    return 0
