"""`darkroom audit --broker` against a real Redis: clean after real use, and failing on purpose
when an unsealed value, a foreign key or persistence is planted."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from contextlib import contextmanager

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bot.cli import main as cli
from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.audit import audit_broker, shown_url
from bot.scale.front import RemoteStyler
from bot.scale.keys import Keys
from bot.scale.protocol import DELIVERING, QUEUE, REVOKED, BrokerSeal, claim_key, job_id, result_key
from bot.scale.ratelimit import RedisRateLimiter
from bot.scale.redis_tokens import RedisTokenStore
from bot.scale.seal import BrokerSealer
from bot.settings import Settings
from handlers import pipeline
from handlers.events import Address, PhotoRef
from handlers.pipeline import Outcome, StyleJob
from inference import StyleRequest

SECRET = b"a" * 64
OPENID = "oPlantedOpenId_0123456789abcdef"


async def real_use(url: str) -> None:
    """What a running bot leaves in Redis: the sealed token, its counters, a pause."""
    redis = AsyncRedis.from_url(url)

    async def fetch():
        return "ACCESS_TOKEN_audit_abcdefgh", 7200.0

    async def ok():
        return True

    try:
        await RedisTokenStore(redis, BrokerSealer(SECRET)).token(fetch)
        limiter = RedisRateLimiter(redis, Pseudonymizer(SECRET))
        for chat in (-1001234567890, 111111111):
            await limiter.process_request(ok, (), {}, "sendMessage", {"chat_id": chat}, None)
        await redis.set(Keys().wechat_token_lock, "f" * 32, px=60_000)
        await redis.set(Keys().telegram_pause(Pseudonymizer(SECRET)("telegram", "chat", 5)), b"1", px=60_000)
    finally:
        await redis.aclose()


@contextmanager
def celery_use(url: str):
    """What the workers' side leaves in Redis, written by the real code: task messages published
    by RemoteStyler through Celery (one left waiting in the queue, one taken by kombu's own
    consumer code without an ack, as a worker holds it while it runs: kombu puts it back in the
    queue, marked redelivered, when this ends), a job claimed and answered, one revoked, a
    worker's heartbeat."""
    settings = Settings(secret=SECRET, broker_url=url, redis_url=url, job_timeout=5)
    styler = RemoteStyler(settings)
    seal = BrokerSeal(SECRET)
    jobs = []
    for key in ("k-waiting", "k-running", "k-answered"):
        job = job_id(SECRET, key)
        work = StyleJob(key=key, chat=Address("telegram", "424242"), photos=(PhotoRef("FILE-ID-123"),), request=StyleRequest("ink"), caption="Ink")
        styler._send(job, seal.seal(job, {"work": work.to_dict()}))
        jobs.append(job)
    redis = Redis.from_url(url)
    try:
        with styler.app.connection_for_read() as connection:
            channel = connection.default_channel
            assert channel.basic_get(QUEUE, no_ack=False) is not None  # kept in `unacked` until acked
            channel.basic_get(QUEUE, no_ack=False).ack()
            redis.set(claim_key(jobs[2]), DELIVERING, ex=60)
            redis.rpush(result_key(jobs[2]), seal.seal(jobs[2], Outcome(pipeline.OutcomeKind.DONE).to_dict()))
            redis.set(claim_key(job_id(SECRET, "k-revoked")), REVOKED, ex=60)
            redis.set(Keys().worker("0123456789abcdef0123456789abcdef"), b"1", ex=15)
            yield jobs
    finally:
        redis.close()


def tamper_queued(url: str, change) -> None:
    """Take the waiting task message, let ``change`` edit its envelope and its body, put it back."""
    redis = Redis.from_url(url)
    try:
        envelope = json.loads(redis.rpop(QUEUE))
        body = json.loads(base64.b64decode(envelope["body"]))
        change(envelope, body)
        envelope["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        redis.lpush(QUEUE, json.dumps(envelope))
    finally:
        redis.close()


def plain_blob(work: dict) -> str:
    return base64.b64encode(json.dumps(work).encode()).decode()


def run_audit(url: str, secret: bytes | None = SECRET) -> tuple[int, str]:
    redis = Redis.from_url(url)
    out = io.StringIO()
    try:
        return audit_broker(redis, secret, out=out), out.getvalue()
    finally:
        redis.close()


@pytest.mark.redis
async def test_clean_after_real_use(redis_url):
    await real_use(redis_url)
    problems, report = run_audit(redis_url)
    assert problems == 0, report
    assert "save ''  OK" in report and "appendonly no  OK" in report
    assert "WeChat access token (sealed): 1 key(s)" in report
    assert "Telegram messages sent per group (pseudonym keys): 1 key(s)" in report
    assert report.rstrip().endswith("only sealed values and anonymous counters in Redis.")


@pytest.mark.redis
@pytest.mark.parametrize(
    "plant, finding",
    [
        (lambda r: r.set(Keys().wechat_token, b"ACCESS_TOKEN_in_the_clear"), "WeChat access token (sealed) key do not look"),
        (lambda r: r.set(Keys().wechat_token, BrokerSealer(b"z" * 64).seal(Keys().wechat_token, b"x")), "do not look"),
        (lambda r: r.set(Keys().wechat_token_lock, OPENID), "token refresh lock"),
        (lambda r: r.zadd(Keys().telegram_sent, {OPENID: 1}), "Telegram messages sent, all chats"),
        (lambda r: r.hset("darkroom:people", OPENID, "Alice"), "1 key(s) Darkroom does not write"),
        (lambda r: r.rpush("celery", b'{"body": "raw"}'), "1 key(s) Darkroom does not write"),
        (lambda r: r.set("darkroom:tg:group:-1001234567890", b"1"), "1 key(s) Darkroom does not write"),
        (lambda r: (r.delete(Keys().wechat_token), r.sadd(Keys().wechat_token, b"x")), "1 key(s) Darkroom does not write"),  # right name, wrong type
    ],
)
async def test_fails_on_anything_planted(redis_url, plant, finding):
    await real_use(redis_url)
    redis = Redis.from_url(redis_url)
    try:
        plant(redis)
    finally:
        redis.close()
    problems, report = run_audit(redis_url)
    assert problems >= 1
    assert finding in report


@pytest.mark.redis
async def test_without_the_instance_key_sealed_values_are_checked_by_form(redis_url):
    await real_use(redis_url)
    problems, report = run_audit(redis_url, secret=None)
    assert problems == 0 and "checked by form only" in report


@pytest.mark.redis
@pytest.mark.parametrize("setting, value", [("save", "3600 1"), ("appendonly", "yes")])
async def test_fails_when_persistence_is_on(redis_url, setting, value):
    redis = Redis.from_url(redis_url)
    before = redis.config_get(setting)[setting]
    redis.config_set(setting, value)
    try:
        problems, report = run_audit(redis_url)
    finally:
        redis.config_set(setting, before)
        redis.close()
    assert problems == 1
    assert "start Redis with --save ''" in report if setting == "save" else "start Redis with --appendonly no" in report


@pytest.mark.redis
async def test_darkroom_audit_checks_the_broker_when_configured(redis_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DARKROOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DARKROOM_SECRET", SECRET.decode())
    monkeypatch.setenv("DARKROOM_REDIS_URL", redis_url)
    await real_use(redis_url)
    assert await asyncio.to_thread(cli, ["audit"]) == 0
    assert "Broker: " in capsys.readouterr().out
    redis = Redis.from_url(redis_url)
    redis.set("darkroom:stray", OPENID)
    redis.close()
    assert await asyncio.to_thread(cli, ["audit", "--broker"]) == 1


def test_broker_audit_is_silent_unless_configured_or_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DARKROOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DARKROOM_BROKER_URL", raising=False)
    monkeypatch.delenv("DARKROOM_REDIS_URL", raising=False)
    assert cli(["audit"]) == 0
    assert "Broker" not in capsys.readouterr().out
    assert cli(["audit", "--broker"]) == 2
    assert "--broker needs DARKROOM_REDIS_URL" in capsys.readouterr().err


def test_the_report_never_shows_the_password():
    assert shown_url("redis://:hunter2secret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert shown_url("redis://bot:hunter2secret@10.0.0.5/1") == "redis://bot:***@10.0.0.5/1"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.redis
async def test_clean_after_celery_use(redis_url):
    await real_use(redis_url)
    with celery_use(redis_url):
        problems, report = run_audit(redis_url)
        assert problems == 0, report
        assert "Celery task queue (task messages, sealed): 1 key(s), 1 value(s)" in report
        assert "Celery tasks being run (task messages, sealed): 1 key(s), 2 value(s)" in report
        assert "Celery tasks being run, index (delivery tags, timestamps): 1 key(s), 1 value(s)" in report
        assert "Celery routing tables: 2 key(s)" in report
        assert "job claims (job-id keys: revoked or delivering): 2 key(s)" in report
        assert "job outcomes (job-id keys, sealed): 1 key(s)" in report
        assert "worker heartbeats (random names): 1 key(s)" in report
        problems, report = run_audit(redis_url, secret=None)
        assert problems == 0 and "checked by form only" in report, report
    problems, report = run_audit(redis_url)  # the held task went back to the queue, redelivered
    assert problems == 0 and "Celery task queue (task messages, sealed): 1 key(s), 2 value(s)" in report, report


def _args(envelope, body, args):
    body[0] = args
    envelope["headers"]["argsrepr"] = repr(args)


@pytest.mark.redis
@pytest.mark.parametrize(
    "change, finding",
    [
        (lambda e, b: _args(e, b, [b[0][0], "424242"]), "more than the sealed argument"),
        (lambda e, b: _args(e, b, ["FILE-ID-123"]), "task argument not a sealed blob"),
        (lambda e, b: _args(e, b, [plain_blob({"chat": "424242", "photos": ["FILE-ID-123"]})]), "does not open with the instance key"),
        (lambda e, b: b.__setitem__(1, {"chat_id": 424242}), "more than the sealed argument"),
        (lambda e, b: e["headers"].__setitem__("argsrepr", "['424242']"), "argsrepr/kwargsrepr"),
        (lambda e, b: e["headers"].__setitem__("caption", "a caption only Mio wrote"), "header caption holds text"),
        (lambda e, b: e["headers"].__setitem__("stamps", {"chat": "424242"}), "header stamps holds text"),
        (lambda e, b: e["headers"].__setitem__("task", "someone.else"), "not Darkroom's task"),
        (lambda e, b: e["properties"].__setitem__("reply_to", "424242"), "reply_to is not a random id"),
        # N5: a raw id written as a number, in any field.
        (lambda e, b: e["headers"].__setitem__("chat_id", 424242), "header chat_id holds text or an unexpected number"),
        (lambda e, b: e["headers"].__setitem__("stamps", {"chat": 424242}), "header stamps holds text or an unexpected number"),
        (lambda e, b: e["headers"].__setitem__("retries", 777000111), "header retries holds text or an unexpected number"),
        (lambda e, b: e["headers"].__setitem__("timelimit", [424242, None]), "header timelimit holds text or an unexpected number"),
        (lambda e, b: e["headers"].__setitem__("group_index", 424242.0), "header group_index holds text or an unexpected number"),
        (lambda e, b: e["properties"].__setitem__("priority", 424242), "property priority holds text or an unexpected number"),
        (lambda e, b: e["properties"].__setitem__("user", [424242]), "property user holds text or an unexpected number"),
    ],
)
async def test_fails_on_a_task_message_carrying_anything_unsealed(redis_url, change, finding):
    with celery_use(redis_url):
        tamper_queued(redis_url, change)
        problems, report = run_audit(redis_url)
    assert problems >= 1 and finding in report, report
    assert "Celery task queue (task messages, sealed) key do not look as they must" in report
    assert "424242" not in report and "FILE-ID" not in report  # the report names no value


@pytest.mark.redis
async def test_without_the_key_a_plain_blob_is_caught_by_its_form(redis_url):
    with celery_use(redis_url):
        tamper_queued(redis_url, lambda e, b: _args(e, b, [plain_blob({"chat": "424242", "photos": ["FILE-ID-123"]})]))
        problems, report = run_audit(redis_url, secret=None)
    assert problems == 1 and "readable text where a sealed blob must be" in report, report


def _tamper_unacked(r: Redis) -> None:
    (tag, entry), = r.hgetall("unacked").items()
    message, exchange, routing_key = json.loads(entry)
    message["headers"]["argsrepr"] = "['FILE-ID-123', 424242]"
    r.hset("unacked", tag, json.dumps([message, exchange, routing_key]))


@pytest.mark.redis
@pytest.mark.parametrize(
    "plant, finding",
    [
        (_tamper_unacked, "Celery tasks being run (task messages, sealed) key do not look"),
        (lambda r: r.set("celery-task-meta-" + "0" * 40, b'{"status": "SUCCESS", "result": null}'), "1 Celery result key(s)"),
        (lambda r: r.set(claim_key("0" * 40), b"424242"), "job claims (job-id keys: revoked or delivering) key do not look"),
        (lambda r: r.rpush(result_key("0" * 40), plain_blob({"kind": "done", "sent": {"chat": "424242"}})), "job outcomes (job-id keys, sealed) key do not look"),
        (lambda r: r.rpush(result_key("1" * 40), BrokerSeal(SECRET).seal("0" * 40, {"kind": "done"})), "does not open with the instance key for its job"),
        (lambda r: r.set(Keys().worker("0" * 32), b"424242"), "worker heartbeats (random names) key do not look"),
        (lambda r: r.set(Keys().live("0" * 40), b"424242"), "live jobs (job-id keys: a worker may run only these) key do not"),
        (lambda r: r.sadd("_kombu.binding.darkroom", b"424242\x06\x16\x06\x16darkroom"), "Celery routing tables key do not look"),
        (lambda r: r.rpush("424242.reply.celery.pidbox", b"{}"), "1 key(s) Darkroom does not write"),
    ],
)
async def test_fails_on_celery_and_worker_keys_that_do_not_look_as_they_must(redis_url, plant, finding):
    with celery_use(redis_url):
        redis = Redis.from_url(redis_url)
        try:
            plant(redis)
        finally:
            redis.close()
        problems, report = run_audit(redis_url)
    assert problems >= 1 and finding in report, report
