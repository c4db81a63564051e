"""`darkroom audit --broker`: what Redis holds for Darkroom, and whether anything is there that
should not be (run automatically by `darkroom audit` when DARKROOM_BROKER_URL is set).

Redis must keep nothing on disk: `CONFIG GET save` must be empty and `appendonly` must be "no"
(a server that refuses CONFIG cannot be checked, which is a finding too). Every key in the
database must be one that bot/shared/keys.py describes, and every value in it must look the way
that description says: the WeChat access token sealed (and, when the instance key is at hand,
opened with it, which proves it is ours), everything else random lock owners, random counter
entries or flags. Any other key or value is a finding; the exit code is 1 if there is any.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .shared.keys import PREFIX, KeyKind, kind_of
from .shared.seal import BrokerSealer, Unsealable, looks_sealed

SHOWN = 20  # unexpected keys listed by name; the rest are counted


def audit_broker(redis, secret: bytes | None, out=None, prefix: str = PREFIX) -> int:
    """Print the report for the database ``redis`` (a synchronous redis.Redis) points at;
    return the number of problems found."""
    out = out or sys.stdout
    problems: list[str] = []
    sealer = BrokerSealer(secret) if secret else None

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
    total = 0
    for raw_key in redis.scan_iter(count=1000):
        total += 1
        key = raw_key.decode("utf-8", "replace")
        kind = kind_of(key, prefix)
        key_type = _text(redis.type(raw_key))
        values = _values(redis, raw_key, key_type)
        if kind is None or kind.type != key_type:
            plain = sum(1 for v in values if not looks_sealed(v))
            unexpected.append(f"{key[:80]!r} ({key_type}, {len(values)} value(s), {plain} not sealed)")
            continue
        bad = [v for v in values if not _fits(kind, key, v, sealer)]
        if bad:
            problems.append(f"{len(bad)} value(s) under a {kind.name} key do not look as they must")
        tally = counts.setdefault(kind.name, [0, 0])
        tally[0] += 1
        tally[1] += len(values)

    print(f"\nKeys: {total}", file=out)
    for name, (keys, elements) in counts.items():
        print(f"  {name}: {keys} key(s), {elements} value(s)", file=out)
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) Darkroom does not write")
        print("  Not written by Darkroom:", file=out)
        for line in unexpected[:SHOWN]:
            print(f"    {line}", file=out)
        if len(unexpected) > SHOWN:
            print(f"    ... and {len(unexpected) - SHOWN} more", file=out)
    if sealer is None and any(name.endswith("(sealed)") for name in counts):
        print("  (no instance key at hand: sealed values checked by form only, not opened)", file=out)
    print("", file=out)
    if problems:
        print("PROBLEMS:", file=out)
        for problem in problems:
            print(f"  - {problem}", file=out)
    else:
        print("OK: nothing on disk, and only sealed values and anonymous counters in Redis.", file=out)
    return len(problems)


def _fits(kind: KeyKind, key: str, value: bytes, sealer: BrokerSealer | None) -> bool:
    if kind.sealed:
        if sealer is None:
            return looks_sealed(value)
        try:
            sealer.open(key, value)
            return True
        except Unsealable:
            return False
    return kind.element is not None and kind.element.fullmatch(value) is not None


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
    from .settings import SettingsError, from_environment

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
