"""From one box to many: what the front and the workers agree on (job ids, Redis keys, the
seal, the Celery app). The front's side is bot/scale/front.py, the worker's bot/scale/worker.py.

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
* ``darkroom:live:<id>``: set by the front while it waits for the job, deleted when it has the
  outcome, gives up, or the person erases their data. Default-deny: a worker runs a task, and
  claims its delivery, only while this mark exists. Redis keeps nothing on disk, so a restart
  drops every mark: tasks queued before it are refused (the front tells those people to send
  again), and a captured task pushed back later is refused too. The sealed task also carries a
  deadline (wall clock), which no restart erases: a task is valid once, for a bounded time.
(Every key, Celery's own included, is described in bot/scale/keys.py; `darkroom audit --broker`
checks them.)
Celery's own result backend is off (`task_ignore_result`), and no events are sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from celery import Celery
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.scale.keys import QUEUE, TASK, Keys
from bot.scale.transport import NAME as TRANSPORT
from bot.settings import Settings
from bot.storage.store import Sealer

__all__ = ["QUEUE", "TASK"]  # re-exported: the queue and task names both sides use

SEAL_LABEL = b"darkroom:broker-seal:v1"
CLAIM_TTL = 24 * 3600  # a claim outlives any redelivery of its task
RESULT_TTL = 600  # an outcome nobody collects goes on its own
HEARTBEAT = 5.0  # worker processes announce themselves this often (the workers gauge)
REVOKED, DELIVERING = b"revoked", b"delivering"
BLPOP_WAIT = 5  # seconds one BLPOP of the front waits for an outcome before it looks again
# redis-py's socket timeout must outlast the longest blocking command (BLPOP_WAIT), or a healthy
# Redis looks lost: the read times out, the connection is dropped, a warning is logged.
SOCKET_TIMEOUT = BLPOP_WAIT + 10.0
LIVE_GRACE = 120  # the live mark outlives the front's wait for the job by this much
# Claim a job's delivery only while the front still waits for it (its live mark exists).
CLAIM_IF_LIVE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
"""
ENGINE_LOAD_TIMEOUT = 300.0  # seconds a new pool process has to load its engine


def job_id(secret: bytes, key: str) -> str:
    """The task id and Redis key for a job: a keyed hash of its random key, nothing of the person."""
    return hmac.new(secret, b"darkroom:job:" + key.encode(), hashlib.sha256).hexdigest()[:40]


def live_key(job: str) -> str:
    return Keys().live(job)


def redis_client(url: str):
    """The asyncio Redis client both sides use. A command that meets a dead connection (Redis
    restarted) reconnects and is tried again (twice, quickly: enough for a stale connection,
    short enough that a Redis really away fails fast and the caller's fallback answers); the
    socket timeout outlasts BLPOP_WAIT."""
    return aioredis.from_url(
        url,
        socket_connect_timeout=3,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError],
    )


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


def celery_app(settings: Settings) -> Celery:
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
        # And on Redis, fetch a task only when a styling process is free: a task held in reserve
        # by a worker that is then killed waits out the visibility timeout, and its person is
        # asked to send again for a job that never started.
        worker_disable_prefetch=settings.broker_url.startswith(("redis://", "rediss://")),
        task_time_limit=settings.job_timeout + 30,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker that loses the broker keeps reconnecting
        broker_transport_options={"visibility_timeout": settings.job_timeout + 60},
        # kombu's Redis transport, hardened: a message that is not a task does not stop a worker.
        broker_transport=TRANSPORT if settings.broker_url.startswith(("redis://", "rediss://")) else None,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Each pool process loads and chooses its engine before it reports up (seconds, more on a
        # busy machine); Celery's default 4 s would kill every replacement of a terminated process
        # before it is ready, and start another, forever.
        worker_proc_alive_timeout=ENGINE_LOAD_TIMEOUT,
    )
    return app
