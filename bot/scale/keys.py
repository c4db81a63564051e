"""Every key Darkroom writes to Redis, in one place: the writers build them here and
`darkroom audit` recognises them here. A key not described below is a finding.

Nothing in a key or a value is a raw id: chats appear only as their HMAC pseudonym (32 hex
digits, bot/safeguards/pseudonym.py), the WeChat access token only sealed (bot/scale/seal.py), and the rest
are random lock owners, random counter entries and numbers.

With `darkroom worker`s (bot/scale/) Redis is also Celery's broker: per job a claim mark and a
sealed outcome under the job's id (a keyed hash, 40 hex digits), a heartbeat per worker process,
and kombu's own keys (the task queue, its unacknowledged copies, routing tables, a lock), whose
task messages carry one sealed blob and nothing else. Celery's result keys are never written
(results are off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "darkroom"
PSEUDONYM = r"[0-9a-f]{32}"
_LOCK_OWNER = re.compile(rb"[0-9a-f]{32}")
_ENTRY = re.compile(rb"[0-9a-f]{16}")
JOB = r"[0-9a-f]{40}"  # bot/scale/protocol.py job_id
_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

TASK = "darkroom.style"  # the one Celery task Darkroom sends
QUEUE = "darkroom"  # its queue (and kombu's list of waiting task messages)
# kombu's routing entries ("routing key SEP pattern SEP queue", SEP = \x06\x16): the task queue
# routed by its name, and a worker's remote-control queue (how revocations reach it), named by
# bot/scale/worker.py's worker hostname.
_EXCHANGE = r"darkroom|celery\.pidbox"
_ROUTE = re.compile(rb"darkroom\x06\x16\x06\x16darkroom|\x06\x16\x06\x16darkroom-[0-9a-f]{8}@[\w.-]+\.celery\.pidbox")


@dataclass(frozen=True)
class Keys:
    prefix: str = PREFIX

    @property
    def wechat_token(self) -> str:
        return f"{self.prefix}:wechat:token"

    @property
    def wechat_token_lock(self) -> str:
        return f"{self.prefix}:wechat:token:lock"

    @property
    def telegram_sent(self) -> str:
        return f"{self.prefix}:tg:sent"

    def telegram_group(self, chat_pseudonym: str) -> str:
        return f"{self.prefix}:tg:group:{chat_pseudonym}"

    def telegram_pause(self, chat_pseudonym: str) -> str:
        return f"{self.prefix}:tg:pause:{chat_pseudonym}"

    def claim(self, job: str) -> str:
        return f"{self.prefix}:claim:{job}"

    def result(self, job: str) -> str:
        return f"{self.prefix}:result:{job}"

    def live(self, job: str) -> str:
        return f"{self.prefix}:live:{job}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"


# The forms bot/scale/audit.py checks beyond a pattern.
OUTCOME = "outcome sealed under the job id"
MESSAGE = "kombu task message"
UNACKED = "kombu unacknowledged task message"


@dataclass(frozen=True)
class KeyKind:
    """One kind of key: its name pattern (after the prefix, or the whole name for Celery's own
    keys: ``prefixed=False``), its Redis type, what each stored element must look like
    (``sealed``: a blob sealed under the key's own name; ``element``: a pattern; ``form``: a
    structure bot/scale/audit.py takes apart and checks under that name)."""

    name: str
    pattern: re.Pattern[str]
    type: str
    sealed: bool = False
    element: re.Pattern[bytes] | None = None
    form: str | None = None
    prefixed: bool = True


KINDS = (
    KeyKind("WeChat access token (sealed)", re.compile(r"wechat:token"), "string", sealed=True),
    KeyKind("WeChat token refresh lock (random owner)", re.compile(r"wechat:token:lock"), "string", element=_LOCK_OWNER),
    KeyKind("Telegram messages sent, all chats (random entries, timestamps)", re.compile(r"tg:sent"), "zset", element=_ENTRY),
    KeyKind("Telegram messages sent per group (pseudonym keys)", re.compile(rf"tg:group:{PSEUDONYM}"), "zset", element=_ENTRY),
    KeyKind("Telegram flood-control pauses per chat (pseudonym keys)", re.compile(rf"tg:pause:{PSEUDONYM}"), "string", element=re.compile(rb"1")),
    # bot/scale/
    KeyKind("job claims (job-id keys: revoked or delivering)", re.compile(rf"claim:{JOB}"), "string", element=re.compile(rb"revoked|delivering")),
    KeyKind("job outcomes (job-id keys, sealed)", re.compile(rf"result:{JOB}"), "list", form=OUTCOME),
    KeyKind("live jobs (job-id keys: a worker may run only these)", re.compile(rf"live:{JOB}"), "string", element=re.compile(rb"1")),
    KeyKind("worker heartbeats (random names)", re.compile(r"worker:[0-9a-f]{32}"), "string", element=re.compile(rb"[01]")),
    # Celery and kombu (redis transport), as bot/scale/ configures them
    KeyKind("Celery task queue (task messages, sealed)", re.compile(re.escape(QUEUE) + r"(\x06\x16[0-9])?"), "list", form=MESSAGE, prefixed=False),
    KeyKind("Celery tasks being run (task messages, sealed)", re.compile(r"unacked"), "hash", form=UNACKED, prefixed=False),
    KeyKind(
        "Celery tasks being run, index (delivery tags, timestamps)", re.compile(r"unacked_index"), "zset", element=re.compile(_UUID), prefixed=False
    ),
    KeyKind("Celery restore lock (random owner)", re.compile(r"unacked_mutex"), "string", element=re.compile(rb"[0-9a-f]{32}"), prefixed=False),
    KeyKind("Celery routing tables", re.compile(rf"_kombu\.binding(_permanent)?\.({_EXCHANGE})"), "set", element=_ROUTE, prefixed=False),
    KeyKind(
        "Celery routing table deadlines (exchange names)",
        re.compile(r"_kombu\.binding_deadlines"),
        "zset",
        element=re.compile(_EXCHANGE.encode()),
        prefixed=False,
    ),
)

# Celery's result backend (off in bot/scale/): one of these would be a task's stored result.
CELERY_RESULT = re.compile(r"celery-task-meta-.*|celery-taskset-meta-.*|chord-unlock-.*")


def kind_of(key: str, prefix: str = PREFIX) -> KeyKind | None:
    head = f"{prefix}:"
    rest = key[len(head):] if key.startswith(head) else None
    for kind in KINDS:
        name = rest if kind.prefixed else key
        if name is not None and kind.pattern.fullmatch(name):
            return kind
    return None
