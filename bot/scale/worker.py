"""The worker's side of scale-out: `darkroom worker` runs the styling pipeline for jobs taken
from the Celery broker, and answers the chat itself.

No photo bytes ever go through the broker. A task carries one opaque argument, the sealed
`StyleJob` (see bot/scale/protocol.py). The worker fetches the photo from the platform itself,
styles it in memory, answers the chat through the platform's client, zeroes everything, and
pushes back a sealed `Outcome`. It builds only the platforms' clients: nothing is received here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from functools import partial

from celery import signals
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bot.engine_config import engine_config
from bot.safeguards import heap
from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.keys import Keys
from bot.scale.protocol import (
    CLAIM_IF_LIVE,
    CLAIM_TTL,
    DELIVERING,
    HEARTBEAT,
    QUEUE,
    RESULT_TTL,
    REVOKED,
    TASK,
    BrokerSeal,
    celery_app,
    claim_key,
    live_key,
    redis_client,
    result_key,
)
from bot.scale.state import SharedState, redis_address
from bot.scale.state import connect as connect_shared_state
from bot.settings import Settings
from handlers import pipeline
from handlers.pipeline import Outcome, OutcomeKind, StyleJob
from handlers.ports import Platform
from inference import AsyncEngine, Engine

log = logging.getLogger("darkroom.workers")
WATCH_INTERVAL = 0.2  # how often a worker looks for its job's revocation mark
# This worker's heartbeat prefix, chosen in the main process and inherited by every styling
# process it forks, so that its /readyz finds its own processes' heartbeats (random, nothing else).
NODE = uuid.uuid4().hex[:24]
UNREACHABLE_LOG_EVERY = 30.0  # seconds between "cannot reach Redis" lines while it stays away


class WorkerRuntime:
    """One per worker process: its engine (loaded once), an event loop, the platforms' API
    clients and Redis. Each task runs `handlers.pipeline.style` on this loop."""

    def __init__(self, settings: Settings, metrics=None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.engine = Engine(engine_config(settings))
        self.engine.verify()  # refuses to work with a tampered model
        self.async_engine = AsyncEngine(self.engine)
        self.seal = BrokerSeal(settings.secret)
        self.redis = redis_client(settings.redis_url)
        self._claim_if_live = self.redis.register_script(CLAIM_IF_LIVE)
        self.platforms: dict[str, Platform] = {}
        self.shared: SharedState | None = None  # on first use
        self.name = NODE + uuid.uuid4().hex[:8]  # announces this process and whether it is free; nothing else
        self.busy = False
        self._beat = threading.Event()
        self._beats = Redis.from_url(
            self.settings.redis_url, socket_connect_timeout=3, socket_timeout=3, retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2)
        )
        threading.Thread(target=self._heartbeat, name="darkroom-heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        """Every HEARTBEAT seconds: this process is up, with 1 free slot or 0. The front sizes its
        queue from these and its /readyz needs a free one; a worker added adds capacity."""
        logged = 0.0
        while True:
            try:
                self._announce()
                logged = 0.0
            except Exception as exc:
                if time.monotonic() - logged > UNREACHABLE_LOG_EVERY:
                    log.warning("worker cannot reach Redis at %s (%s); retrying", redis_address(self.settings.redis_url), type(exc).__name__)
                    logged = time.monotonic()
            if self._beat.wait(HEARTBEAT):
                return

    def _announce(self) -> None:
        self._beats.set(Keys().worker(self.name), b"0" if self.busy else b"1", ex=int(HEARTBEAT * 3))

    def run(self, job: str, blob: str) -> None:
        self.busy = True
        try:
            self._announce()
        except Exception:
            pass  # the heartbeat says it on its next beat
        try:
            self.loop.run_until_complete(self._run(job, blob))
        finally:
            self.busy = False
            try:
                self._announce()
            except Exception:
                pass

    async def platform(self, name: str) -> Platform:
        if name not in self.platforms:
            pseudonymize = Pseudonymizer(self.settings.secret)
            if self.shared is None:
                # Every process of the bot shares one WeChat token (a new one expires the old)
                # and Telegram's global send limits: the workers too.
                self.shared = await connect_shared_state(self.settings, pseudonymize)
            if name == "telegram":
                from bot.platforms.telegram.client import TelegramClient  # noqa: PLC0415 (loaded: _import_clients)

                # Only the client: this process fetches and answers, and receives nothing.
                limiter = self.shared.telegram_limiter() if self.shared else None
                telegram = TelegramClient(self.settings, rate_limiter=limiter)
                await telegram.connect()
                self.platforms[name] = telegram
            elif name == "wechat":
                from bot.platforms.wechat.client import WeChatClient  # noqa: PLC0415 (loaded: _import_clients)

                # Only the client: no callbacks come here; it fetches and answers.
                tokens = self.shared.wechat_tokens() if self.shared else None
                wechat = WeChatClient(self.settings, pseudonymize, tokens=tokens)
                await wechat.start()
                self.platforms[name] = wechat
            else:
                raise ValueError("unknown platform")
        return self.platforms[name]

    async def _run(self, job: str, blob: str) -> None:
        started = time.monotonic()
        log.debug("job started")
        try:
            opened = self.seal.open(job, blob)
            work = StyleJob.from_dict(opened["work"])
            deadline = float(opened["deadline"])
        except Exception as exc:  # not sealed by this instance: dropped, never run
            log.warning("refused a task that does not open with this instance's key (%s)", type(exc).__name__)
            return
        try:
            outcome = await self._style(job, work, deadline)
        except Exception as exc:
            # Whatever went wrong (Redis gone for longer than the retries, a platform client
            # that would not start), the front hears of it now, not after its whole timeout.
            log.warning("a job failed on this worker (%s)", type(exc).__name__)
            outcome = Outcome(OutcomeKind.FAILED, detail=type(exc).__name__)
        if self.metrics is not None:
            self.metrics.observe(outcome, time.monotonic() - started)
        sealed = self.seal.seal(job, outcome.to_dict())
        try:
            async with self.redis.pipeline(transaction=True) as batch:
                batch.rpush(result_key(job), sealed)
                batch.expire(result_key(job), RESULT_TTL)
                await batch.execute()
        except Exception as exc:
            log.warning("could not send a job's outcome to the front (%s); it times out there", type(exc).__name__)
            return
        log.debug("job outcome sent")

    async def _style(self, job: str, work: StyleJob, deadline: float) -> Outcome:
        """Default-deny: run the job only before its sealed deadline, while the front still
        waits for it (its live mark), and when nobody answered for it yet (its claim)."""
        if time.time() > deadline:
            log.info("refused a task past its deadline")
            return Outcome(OutcomeKind.CLAIMED, detail="expired")
        live, claimed = await self.redis.mget(live_key(job), claim_key(job))
        if live is None:
            log.info("refused a task the front no longer waits for (erased, answered, or Redis restarted)")
            return Outcome(OutcomeKind.CLAIMED, detail="not live")
        if claimed is not None:
            return Outcome(OutcomeKind.CLAIMED)  # erased while queued, or answered by an earlier run
        platform = await self.platform(work.chat.platform)
        running = asyncio.ensure_future(
            pipeline.style(work, platform, self.async_engine, claim=partial(self._claim, job))
        )
        watcher = asyncio.ensure_future(self._watch(job, running))
        try:
            return await asyncio.wait_for(running, timeout=max(1.0, min(self.settings.job_timeout, deadline - time.time())))
        except asyncio.CancelledError:
            log.info("a job was revoked while it ran; it was stopped")
            return Outcome(OutcomeKind.CLAIMED)  # revoked: stopped before it delivered
        except TimeoutError:
            return Outcome(OutcomeKind.FAILED, detail="timeout")
        finally:
            watcher.cancel()

    async def _claim(self, job: str) -> bool:
        return bool(await self._claim_if_live(keys=[claim_key(job), live_key(job)], args=[DELIVERING, CLAIM_TTL]))

    async def _watch(self, job: str, running: asyncio.Future) -> None:
        """Stop the job (the engine's cancel hooks kill the decode, terminate the inference) the
        moment the front marks it revoked."""
        while not running.done():
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                live, claimed = await self.redis.mget(live_key(job), claim_key(job))
                if claimed == REVOKED or (live is None and claimed is None):
                    running.cancel()
                    return
            except Exception:
                pass


_runtime: WorkerRuntime | None = None


def build_worker_app(settings: Settings):
    """The Celery app of `darkroom worker`, with the styling task and per-process set-up."""
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
    heap.wipe_freed_memory()
    metrics = None
    if settings.worker_metrics_port:
        from bot.scale.metrics import WorkerMetrics  # noqa: PLC0415 (after main() chose multiprocess mode)

        metrics = WorkerMetrics()  # its values go to files the main process serves
    _runtime = WorkerRuntime(settings, metrics)
    _import_clients()
    heap.freeze_start_up_objects()  # before the first task: per-job collections skip all this
    log.info("worker process %d ready (engine loaded)", os.getpid())
    return _runtime


def _import_clients() -> None:
    """The platforms' client modules (python-telegram-bot, httpx, aiohttp, wechatpy): in each
    styling process, before its start-up is frozen out of the garbage collector, and not in
    Celery's main process, which never uses them (~30 MB of its RSS)."""
    import bot.platforms.telegram.client  # noqa: F401, PLC0415
    import bot.platforms.wechat.client  # noqa: F401, PLC0415


def wait_for(url: str, what: str) -> None:
    """Start-up: wait for Redis (or a Redis broker), with backoff, one line now and then."""
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    delay, logged = 0.5, 0.0
    while True:
        try:
            client.ping()
            client.close()
            return
        except Exception as exc:
            if time.monotonic() - logged > UNREACHABLE_LOG_EVERY:
                log.warning("worker cannot reach %s at %s (%s); retrying", what, redis_address(url), type(exc).__name__)
                logged = time.monotonic()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def main(settings: Settings) -> int:
    directory = None
    if settings.worker_metrics_port:
        # Lazily: prometheus-client must not be imported before multiprocess_directory() runs.
        from bot.scale.health import WorkerHealth, multiprocess_directory, serve  # noqa: PLC0415

        directory = multiprocess_directory()  # before prometheus-client is imported
        serve(settings, WorkerHealth(settings, NODE))
    if settings.broker_url.startswith(("redis://", "rediss://")) and settings.broker_url != settings.redis_url:
        wait_for(settings.broker_url, "the broker")
    wait_for(settings.redis_url, "Redis")
    try:
        return _run_celery(settings)
    finally:
        if directory is not None:
            from bot.scale.health import remove_directory  # noqa: PLC0415

            remove_directory(directory)


def _run_celery(settings: Settings) -> int:
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
