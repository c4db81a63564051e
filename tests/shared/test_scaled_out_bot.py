"""The whole bot with DARKROOM_REDIS_URL set: the Telegram limiter is on PTB's bot, flood
control still waits and retries, and Redis ends up holding nothing that names anyone."""

from __future__ import annotations

import io

import pytest
from redis import Redis

from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.audit import audit_broker
from bot.scale.keys import Keys
from bot.scale.ratelimit import RedisRateLimiter
from bot.scale.redis_tokens import RedisTokenStore
from bot.scale.state import connect
from bot.settings import SettingsError, StartupError, from_environment
from tests.conftest import ALICE, GROUP, SECRET, running_bot
from tests.fakes.telegram_api import Failure
from tests.fakes.wechat_api import APPID, APPSECRET, TOKEN


@pytest.mark.redis
async def test_scaled_out_bot_keeps_to_shared_limits_and_stores_no_ids(fake_telegram, wechat_api, data_dir, engine, redis_url):
    fake = fake_telegram
    wechat = {"WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": APPSECRET, "WECHAT_API_URL": wechat_api.url}
    async with running_bot(fake, data_dir, engine, DARKROOM_REDIS_URL=redis_url, **wechat) as bot:
        assert isinstance(bot.telegram.bot.rate_limiter, RedisRateLimiter)
        assert isinstance(bot.wechat._tokens, RedisTokenStore)
        token = await bot.wechat._access_token()
        await fake.send_text_from(ALICE, "/help")
        await fake.wait_for_text("/delete_my_data", chat_id=ALICE.id)
        fake.failures.append(Failure("sendMessage", "retry_after", times=1, retry_after=1))
        await fake.send_text_from(ALICE, "/help", chat_id=GROUP)
        await fake.wait_for("sendMessage", chat_id=GROUP)  # waited out, then delivered
        assert "sendMessage!retry_after" in fake.methods()
        redis = Redis.from_url(redis_url)
        try:
            group = Pseudonymizer(SECRET.encode())("telegram", "chat", GROUP)
            assert redis.exists(Keys().telegram_sent, Keys().telegram_group(group), Keys().wechat_token) == 3
            everything = b"".join(k + (redis.dump(k) or b"") for k in redis.scan_iter())
            for raw in (str(ALICE.id), str(GROUP), str(abs(GROUP)), ALICE.username, ALICE.first_name, token):
                assert raw.encode() not in everything
            out = io.StringIO()
            assert audit_broker(redis, SECRET.encode(), out=out) == 0, out.getvalue()
        finally:
            redis.close()
    assert bot.shared is None  # closed with the bot


def test_broker_url_setting(tmp_path):
    base = {"DARKROOM_DATA_DIR": str(tmp_path)}
    assert from_environment(base, dotenv=None).broker_url == ""
    settings = from_environment({**base, "DARKROOM_BROKER_URL": "redis://:s3cret-pass@10.0.0.5:6379/2"}, dotenv=None)
    assert settings.broker_password == "s3cret-pass"
    assert "s3cret-pass" in settings.secrets()
    assert "s3cret-pass" not in repr(settings)
    short = from_environment({**base, "DARKROOM_BROKER_URL": "redis://:pw@10.0.0.5/0"}, dotenv=None)
    assert "redis://:pw@10.0.0.5/0" in short.secrets()  # too short to redact alone, hidden with its URL
    for bad in ("http://10.0.0.5", "redis://host:port/0"):
        with pytest.raises(SettingsError, match="DARKROOM_BROKER_URL") as caught:
            from_environment({**base, "DARKROOM_BROKER_URL": bad}, dotenv=None)
        assert "10.0.0.5" not in str(caught.value)


async def test_unset_broker_means_no_shared_state(tmp_path):
    settings = from_environment({"DARKROOM_DATA_DIR": str(tmp_path), "DARKROOM_SECRET": SECRET}, dotenv=None)
    assert await connect(settings, Pseudonymizer(SECRET.encode())) is None


async def test_an_unreachable_broker_stops_startup_with_one_clear_message(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = from_environment(
        {"DARKROOM_DATA_DIR": str(tmp_path), "DARKROOM_SECRET": SECRET, "DARKROOM_REDIS_URL": f"redis://:pass-word-1@127.0.0.1:{port}/0"},
        dotenv=None,
    )
    with pytest.raises(StartupError, match="cannot use Redis at DARKROOM_REDIS_URL") as caught:
        await connect(settings, Pseudonymizer(SECRET.encode()))
    assert "pass-word-1" not in str(caught.value)


@pytest.mark.redis
async def test_persistence_on_is_warned_about_at_startup(redis_url, tmp_path, caplog):
    redis = Redis.from_url(redis_url)
    redis.config_set("appendonly", "yes")
    settings = from_environment(
        {"DARKROOM_DATA_DIR": str(tmp_path), "DARKROOM_SECRET": SECRET, "DARKROOM_REDIS_URL": redis_url}, dotenv=None
    )
    try:
        with caplog.at_level("WARNING", logger="darkroom.shared"):
            shared = await connect(settings, Pseudonymizer(SECRET.encode()))
            await shared.close()
    finally:
        redis.config_set("appendonly", "no")
        redis.close()
    assert any("persistence is on" in r.getMessage() for r in caplog.records)
