"""`darkroom audit --broker`: what Redis holds for Darkroom, and whether anything is there that
should not be (run automatically by `darkroom audit` when DARKROOM_BROKER_URL is set).

Redis must keep nothing on disk: `CONFIG GET save` must be empty and `appendonly` must be "no"
(a server that refuses CONFIG cannot be checked, which is a finding too). Every key in the
database must be one that bot/scale/keys.py describes, and every value in it must look the way
that description says: the WeChat access token and the workers' job outcomes sealed (and, when
the instance key is at hand, opened with it, which proves they are ours), everything else random
lock owners, random counter entries, job marks or flags. Celery's task messages (waiting in the
queue or held unacknowledged) are taken apart: the body must be the one sealed argument of
Darkroom's task and nothing else, the headers only Celery's bookkeeping (the task's name, its id,
a repr of that same sealed argument). A Celery result key is a finding (results are off). Any
other key or value is a finding; the exit code is 1 if there is any.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bot.scale.keys import CELERY_RESULT, MESSAGE, OUTCOME, PREFIX, QUEUE, TASK, UNACKED, KeyKind, kind_of
from bot.scale.seal import BrokerSealer, Unsealable, looks_sealed
from bot.settings import SettingsError, from_environment

SHOWN = 20  # unexpected keys listed by name; the rest are counted


def audit_broker(redis, secret: bytes | None, out=None, prefix: str = PREFIX) -> int:
    """Print the report for the database ``redis`` (a synchronous redis.Redis) points at;
    return the number of problems found."""
    out = out or sys.stdout
    problems: list[str] = []
    sealer = BrokerSealer(secret) if secret else None
    jobs = _JobSeal(secret)

    print("Persistence:", file=out)
    try:
        save = _text(redis.config_get("save").get("save", ""))
        appendonly = _text(redis.config_get("appendonly").get("appendonly", ""))
    except Exception as exc:  # noqa: BLE001 - any refusal means we cannot prove it
        problems.append(f"cannot read the persistence settings (CONFIG GET refused: {type(exc).__name__})")
        print("  CONFIG GET refused: cannot check", file=out)
    else:
        if save.strip():
            problems.append(f"RDB snapshots are on (save '{save}'): start Redis with --save ''")
        if appendonly != "no":
            problems.append(f"the append-only file is on (appendonly {appendonly}): start Redis with --appendonly no")
        print(f"  save '{save}'  {'OK' if not save.strip() else 'ON: writes snapshots to disk'}", file=out)
        print(f"  appendonly {appendonly}  {'OK' if appendonly == 'no' else 'ON: writes every change to disk'}", file=out)

    counts: dict[str, list[int]] = {}  # kind -> [keys, elements]
    unexpected: list[str] = []
    celery_results = 0
    total = 0
    for raw_key in redis.scan_iter(count=1000):
        total += 1
        key = raw_key.decode("utf-8", "replace")
        kind = kind_of(key, prefix)
        key_type = _text(redis.type(raw_key))
        values = _values(redis, raw_key, key_type)
        if CELERY_RESULT.fullmatch(key):
            celery_results += 1
            continue
        if kind is None or kind.type != key_type:
            plain = sum(1 for v in values if not looks_sealed(v))
            unexpected.append(f"{key[:80]!r} ({key_type}, {len(values)} value(s), {plain} not sealed)")
            continue
        reasons = [r for r in (_misfit(kind, key, v, sealer, jobs) for v in values) if r]
        if reasons:
            shown = "; ".join(sorted(set(reasons))[:3])
            problems.append(f"{len(reasons)} value(s) under a {kind.name} key do not look as they must ({shown})")
        tally = counts.setdefault(kind.name, [0, 0])
        tally[0] += 1
        tally[1] += len(values)

    print(f"\nKeys: {total}", file=out)
    for name, (keys, elements) in counts.items():
        print(f"  {name}: {keys} key(s), {elements} value(s)", file=out)
    if celery_results:
        problems.append(
            f"{celery_results} Celery result key(s) (celery-task-meta-*): results must be off (task_ignore_result, no result backend)"
        )
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) Darkroom does not write")
        print("  Not written by Darkroom:", file=out)
        for line in unexpected[:SHOWN]:
            print(f"    {line}", file=out)
        if len(unexpected) > SHOWN:
            print(f"    ... and {len(unexpected) - SHOWN} more", file=out)
    if sealer is None and any("sealed" in name for name in counts):
        print("  (no instance key at hand: sealed values checked by form only, not opened)", file=out)
    print("", file=out)
    if problems:
        print("PROBLEMS:", file=out)
        for problem in problems:
            print(f"  - {problem}", file=out)
    else:
        print("OK: nothing on disk, and only sealed values and anonymous counters in Redis.", file=out)
    return len(problems)


def _misfit(kind: KeyKind, key: str, value: bytes, sealer: BrokerSealer | None, jobs: _JobSeal) -> str | None:
    """Why ``value`` does not belong under ``key`` (a short reason naming no value), or None."""
    if kind.form == OUTCOME:
        return jobs.misfit(key.rsplit(":", 1)[1], _text(value))
    if kind.form == MESSAGE:
        return _message_misfit(value, jobs)
    if kind.form == UNACKED:
        return _unacked_misfit(value, jobs)
    if kind.sealed:
        if sealer is None:
            return None if looks_sealed(value) else "not sealed"
        try:
            sealer.open(key, value)
            return None
        except Unsealable:
            return "does not open with the instance key"
    if kind.element is not None and kind.element.fullmatch(value) is not None:
        return None
    return "unexpected value"


class _JobSeal:
    """The workers' seal (bot/scale/protocol.py BrokerSeal: base64 of AES-GCM, bound to the job id)."""

    _NONCE, _TAG = 12, 16

    def __init__(self, secret: bytes | None) -> None:
        from bot.scale.protocol import BrokerSeal

        self._seal = BrokerSeal(secret) if secret else None

    def misfit(self, job: str, blob) -> str | None:
        if not isinstance(blob, str):
            return "not a sealed blob"
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            return "not a sealed blob (not base64)"
        if self._seal is not None:
            try:
                self._seal.open(job, blob)
                return None
            except Exception:  # noqa: BLE001 - InvalidTag, or not JSON inside: not ours either way
                return "sealed blob does not open with the instance key for its job"
        # Without the key, the form: nonce, tag and a body, and not readable text (ciphertext
        # is random bytes; 40 random bytes are valid UTF-8 with odds far below one in a billion).
        if len(raw) < self._NONCE + self._TAG + 2:
            return "too short to be sealed"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "readable text where a sealed blob must be"


_HEX_JOB = re.compile(r"[0-9a-f]{40}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ORIGIN = re.compile(r"gen[0-9]+@[\w.-]+")  # Celery's sender: process id @ host name
# Celery's headers (protocol 2) that may hold text, and what that text may be; any other header
# may hold only nothing, a flag or a number (so no text can hide in it).
_TEXT_HEADERS = {"lang", "task", "id", "root_id", "argsrepr", "kwargsrepr", "origin"}
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _unacked_misfit(value: bytes, jobs: _JobSeal) -> str | None:
    """A field of kombu's ``unacked`` hash (a delivery tag) or its value: [message, exchange, routing key]."""
    if _UUID.fullmatch(_text(value)):
        return None
    try:
        entry = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return "not a kombu unacknowledged entry"
    if not (isinstance(entry, list) and len(entry) == 3 and entry[1:] == ["", QUEUE]):
        return "not a kombu unacknowledged entry for Darkroom's queue"
    return _envelope_misfit(entry[0], jobs)


def _message_misfit(value: bytes, jobs: _JobSeal) -> str | None:
    try:
        envelope = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return "not a kombu message"
    return _envelope_misfit(envelope, jobs)


def _envelope_misfit(envelope, jobs: _JobSeal) -> str | None:
    """A kombu message holding one call of Darkroom's task, with its sealed argument only."""
    if not isinstance(envelope, dict) or set(envelope) != {"body", "content-encoding", "content-type", "headers", "properties"}:
        return "not a kombu message"
    if envelope["content-type"] != "application/json" or envelope["content-encoding"] != "utf-8":
        return "message not JSON"
    headers, properties = envelope["headers"], envelope["properties"]
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        return "not a kombu message"
    job = headers.get("id")
    if headers.get("task") != TASK or headers.get("lang") != "py":
        return "not Darkroom's task"
    if not isinstance(job, str) or not _HEX_JOB.fullmatch(job) or headers.get("root_id") not in (None, job):
        return "task id is not a job id"
    if not isinstance(headers.get("origin"), (str, type(None))) or (headers.get("origin") and not _ORIGIN.fullmatch(headers["origin"])):
        return "unexpected task origin"
    if (reason := _plain_fields(headers, _TEXT_HEADERS)) is not None:
        return f"header {reason}"
    # Properties: kombu's routing and bookkeeping only.
    if properties.get("correlation_id") != job or properties.get("body_encoding") != "base64":
        return "unexpected message properties"
    route = dict(properties.get("delivery_info") or {})
    if route.pop("redelivered", False) not in (True, False) or route != {"exchange": "", "routing_key": QUEUE}:
        return "not routed to Darkroom's queue"
    for name in ("reply_to", "delivery_tag"):
        if properties.get(name) is not None and not (isinstance(properties[name], str) and _UUID.fullmatch(properties[name])):
            return f"property {name} is not a random id"
    if (reason := _plain_fields(properties, {"correlation_id", "body_encoding", "delivery_info", "reply_to", "delivery_tag"})) is not None:
        return f"property {reason}"
    # The body: [args, kwargs, embed] with args the one sealed blob.
    try:
        body = json.loads(base64.b64decode(envelope["body"], validate=True))
    except (TypeError, ValueError, binascii.Error, UnicodeDecodeError):
        return "message body not base64 JSON"
    if not (isinstance(body, list) and len(body) == 3):
        return "message body not a task call"
    args, kwargs, embed = body
    if kwargs != {} or embed != _EMBED:
        return "message body holds more than the sealed argument"
    if not (isinstance(args, list) and len(args) == 1):
        return "message body holds more than the sealed argument"
    if (reason := jobs.misfit(job, args[0])) is not None:
        return f"task argument {reason}"
    if not _repr_of(args[0], headers.get("argsrepr")) or headers.get("kwargsrepr") not in (None, "{}"):
        return "argsrepr/kwargsrepr show more than the sealed argument"
    return None


def _plain_fields(fields: dict, texts: set[str]) -> str | None:
    """Any field other than ``texts`` may hold only null, flags, or lists/dicts of them; a number
    only in a field Celery fills with a small count or limit (_NUMBERS), up to its bound. A raw
    chat or user id written as a number (Telegram's are 6 to 13 digits) is caught in any field."""

    def plain(value, name: str) -> bool:
        if value is None or isinstance(value, bool):
            return True
        if isinstance(value, (int, float)):
            return name in _NUMBERS and 0 <= value <= _NUMBERS[name] and value == int(value)
        if isinstance(value, list):
            return all(plain(v, name) for v in value)
        if isinstance(value, dict):
            return all(_FIELD.fullmatch(k) and plain(v, k) for k, v in value.items())
        return False

    for name, value in fields.items():
        if name in texts:
            continue
        if not _FIELD.fullmatch(name):
            return "with an unexpected name"
        if not plain(value, name):
            return f"{name} holds text or an unexpected number"
    return None


# The numbers Celery and kombu write in a task message, each with a bound no id fits under:
# retry count, [soft, hard] time limits in seconds (DARKROOM_JOB_TIMEOUT + 30 at most), nesting,
# a group's index, the message priority and delivery mode.
_NUMBERS = {
    "retries": 1000,
    "timelimit": 24 * 3600,
    "replaced_task_nesting": 1000,
    "group_index": 1000,
    "priority": 255,
    "delivery_mode": 2,
}
_FIELD = re.compile(r"[a-z_]{1,40}")


def _repr_of(blob: str, argsrepr) -> bool:
    """Celery's argsrepr of ``[blob]``: absent, whole, or cut short with "..." (argsrepr_maxsize)."""
    if argsrepr is None:
        return True
    if not (isinstance(argsrepr, str) and argsrepr.startswith("['") and argsrepr.endswith("']")):
        return False
    shown = argsrepr[2:-2]
    if shown.endswith("..."):
        return blob.startswith(shown[:-3])
    return shown == blob


def _values(redis, key: bytes, key_type: str) -> list[bytes]:
    """Every value stored under ``key``: hash fields and values, list items, set and sorted-set
    members; a type we do not read element by element is taken whole (DUMP)."""
    if key_type == "string":
        value = redis.get(key)
        return [] if value is None else [value]
    if key_type == "hash":
        return [part for pair in redis.hgetall(key).items() for part in pair]
    if key_type == "list":
        return list(redis.lrange(key, 0, -1))
    if key_type == "set":
        return list(redis.smembers(key))
    if key_type == "zset":
        return [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
    if key_type == "stream":
        return [part for _, fields in redis.xrange(key) for pair in fields.items() for part in pair]
    if key_type == "none":  # expired between SCAN and TYPE
        return []
    dumped = redis.dump(key)
    return [] if dumped is None else [dumped]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def shown_url(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    else:
        netloc = f":***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def main(required: bool = False) -> int:
    """Exit code: 0 clean (or no broker configured and none asked for), 1 problems, 2 unusable."""
    try:
        settings = from_environment()
    except SettingsError as exc:
        print(f"darkroom: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        if required:
            print("darkroom: --broker needs DARKROOM_REDIS_URL (or a Redis DARKROOM_BROKER_URL)", file=sys.stderr)
            return 2
        return 0
    try:
        from redis import Redis
        from redis.exceptions import RedisError
    except ImportError:
        print("darkroom: the Redis client is not installed: pip install 'darkroom-bot[scale]'", file=sys.stderr)
        return 2
    print(f"\nBroker: {shown_url(settings.redis_url)}")
    try:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=10, socket_timeout=30)
        redis.ping()
    except (RedisError, ValueError) as exc:
        print(f"darkroom: cannot reach Redis at DARKROOM_REDIS_URL ({type(exc).__name__})", file=sys.stderr)
        return 2
    try:
        return 1 if audit_broker(redis, _instance_secret(settings)) else 0
    finally:
        redis.close()


def _instance_secret(settings) -> bytes | None:
    """DARKROOM_SECRET or the key file, if there is one; the audit never creates it."""
    if settings.secret:
        return settings.secret
    path: Path = settings.secret_file
    try:
        key = path.read_bytes().strip()
    except OSError:
        return None
    return key if len(key) >= 32 else None
