"""`darkroom audit --broker` against a real Redis: clean after real use, and failing on purpose
when an unsealed value, a foreign key or persistence is planted."""

from __future__ import annotations

import asyncio
import io

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bot.audit_broker import audit_broker, shown_url
from bot.cli import main as cli
from bot.pseudonym import Pseudonymizer
from bot.shared.keys import Keys
from bot.shared.ratelimit import RedisRateLimiter
from bot.shared.redis_tokens import RedisTokenStore
from bot.shared.seal import BrokerSealer

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
