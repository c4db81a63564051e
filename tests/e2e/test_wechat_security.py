"""WeChat callbacks that cannot be forged or replayed, end to end: signed (and encrypted) callbacks
posted to the running aiohttp app, wechatpy on both sides, the fake WeChat API recording what the
bot did as a consequence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.settings import SettingsError, from_environment
from bot.storage.store import Storage
from tests.e2e.test_wechat_flow import OPENID, consent_by_typing, wechat_bot
from tests.fakes.wechat_api import AES_KEY, APPID, APPSECRET, TOKEN

VICTIM = OPENID
CHOSEN = "oChosen_by_the_attacker_0001"  # an OpenID the attacker wants consent recorded for


def pseudonym(bot, openid: str) -> str:
    return bot.wechat._pseudonymize("wechat", "user", openid)


async def quiet(api, seconds: float = 0.6) -> int:
    """Let anything a request wrongly started reach the API; return how many calls there were."""
    await asyncio.sleep(seconds)
    return len(api.calls)


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("safe_mode", [False, True], ids=["plain", "safe"])
async def test_timestamps_outside_the_window_or_not_numbers_are_refused(
    safe_mode, fake_telegram, wechat_api, data_dir, engine
):
    api = wechat_api
    now = int(time.time())
    bad = {
        "three days old": str(now - 3 * 86400),
        "ten years ahead": str(now + 10 * 365 * 86400),
        "just outside the window": str(now - 301),
        "not a number": "notanumber",
        "negative": str(-now),
        "full-width digits": "".join(chr(0xFF10 + int(d)) for d in str(now)),
    }
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=safe_mode) as (bot, sender):
        for label, timestamp in bad.items():
            query = sender.signed_query(timestamp=timestamp)
            assert (await sender.verify_url("echo", query=query))[0] == 403, label
            status, _ = await sender.post(sender.text_xml(VICTIM, "开始"), VICTIM, query=query)
            assert status == 403, label
        assert await quiet(api) == 0, "a request with a bad timestamp reached the conversation"
        # Inside the window (200 s old) the same request is answered: the refusals are not vacuous.
        query = sender.signed_query(timestamp=str(now - 200))
        assert await sender.post(sender.text_xml(VICTIM, "开始"), VICTIM, query=query) == (200, "success")
        await api.wait_for_text("你同意吗", VICTIM)


async def test_the_window_is_configurable(fake_telegram, wechat_api, data_dir, engine):
    now = int(time.time())
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine, WECHAT_TIMESTAMP_WINDOW="60") as (bot, sender):
        assert (await sender.verify_url("e", query=sender.signed_query(timestamp=str(now - 120))))[0] == 403
        assert await sender.verify_url("e", query=sender.signed_query(timestamp=str(now - 30))) == (200, "e")


# -- plain mode: one leaked signature must not carry any XML ----------------------------------------


async def test_a_leaked_signature_cannot_carry_arbitrary_xml(fake_telegram, wechat_api, data_dir, engine):
    """A reverse proxy's access log holds signature, timestamp, nonce and openid of every callback.
    With them, an attacker posts XML of their own: erase the victim, consent for someone else."""
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        await sender.post(sender.text_xml(VICTIM, "风格 水墨"), VICTIM)
        await api.wait_for_text("水墨", VICTIM)
        verification = sender.signed_query()
        assert await sender.verify_url("echo-1", query=verification) == (200, "echo-1")
        logged = [query for query, _ in sender.requests] + [verification]  # the access log
        rows_before = await bot.storage.dump(replay_guard=False)
        calls_before = len(api.calls)

        for leaked in logged:
            signed = {k: leaked[k] for k in ("signature", "timestamp", "nonce")}
            erase = sender.text_xml(VICTIM, "删除我的数据")
            assert (await sender.post(erase, VICTIM, query=signed))[0] == 403
            consent = sender.event_xml(CHOSEN, "subscribe")
            assert (await sender.post(consent, CHOSEN, query=signed))[0] == 403
            agree = sender.text_xml(CHOSEN, "同意")
            assert (await sender.post(agree, CHOSEN, query=signed))[0] == 403

        assert await quiet(api) == calls_before, "a forged body made the bot act"
        assert await bot.storage.dump(replay_guard=False) == rows_before, "a forged body changed the database"
        assert await bot.storage.consent(pseudonym(bot, CHOSEN)) is None
        assert await bot.storage.consent(pseudonym(bot, VICTIM)) is not None

        # A signature leaked from a request Darkroom never saw is refused once the window passes.
        stale = sender.signed_query(timestamp=str(int(time.time()) - 301))
        assert (await sender.post(sender.text_xml(VICTIM, "删除我的数据"), VICTIM, query=stale))[0] == 403
        assert await bot.storage.consent(pseudonym(bot, VICTIM)) is not None


# -- replays, across a restart -------------------------------------------------------------------


async def test_a_captured_erasure_is_not_replayed_even_after_a_restart(fake_telegram, wechat_api, data_dir, engine):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        await consent_by_typing(api, sender)
        # Signed 60 s ago (inside the window, past the retry grace), as when it is replayed later.
        query = sender.signed_query(timestamp=str(int(time.time()) - 60))
        assert await sender.post(sender.text_xml(VICTIM, "删除我的数据"), VICTIM, query=query) == (200, "success")
        await api.wait_for_text("回执", VICTIM)
        captured = sender.requests[-1]
        # Replayed at once, byte for byte: refused, nothing happens.
        assert (await sender.send_raw(*captured))[0] == 403
    api.calls.clear()
    await asyncio.sleep(1.1)  # events are deduplicated by sender and CreateTime (whole seconds)

    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        await consent_by_typing(api, sender)
        rows = await bot.storage.dump(replay_guard=False)
        assert any(row[0] == "consents" for row in rows)
        status, _ = await sender.send_raw(*captured)
        assert status == 403, "the captured /delete_my_data was accepted after a restart"
        await quiet(api)
        assert not any("回执" in t for t in api.texts(VICTIM)), "the replayed erasure ran again"
        assert await bot.storage.dump(replay_guard=False) == rows
        # The replay guard holds keyed hashes only.
        for row in await bot.storage.dump():
            assert all(VICTIM not in str(value) for value in row)


async def test_reusing_a_pair_with_another_body_is_refused_in_safe_mode(fake_telegram, wechat_api, data_dir, engine):
    """Safe mode authenticates the body, yet a used (timestamp, nonce) still cannot carry a second
    message, even a genuinely encrypted one."""
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        await consent_by_typing(api, sender)
        query = sender.signed_query()
        assert await sender.post(sender.text_xml(VICTIM, "隐私"), VICTIM, query=query) == (200, "success")
        await api.wait_for_text("保存期限", VICTIM)
        assert (await sender.post(sender.text_xml(VICTIM, "删除我的数据"), VICTIM, query=query))[0] == 403
        await quiet(api)
        assert not any("回执" in t for t in api.texts(VICTIM))


# -- genuine retries -------------------------------------------------------------------------------


async def test_genuine_retries_are_answered_and_acted_on_once(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    """WeChat's documentation does not say whether a retry reuses timestamp and nonce: both kinds
    of retry are answered "success" and styled once, and a retry after a restart is still known."""
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        await consent_by_typing(api, sender)
        await sender.post(sender.text_xml(VICTIM, "/style ink"), VICTIM)
        await api.wait_for_text("Ink wash", VICTIM)
        api.media["MEDIA_RETRY"] = small_portrait
        photo = sender.image_xml(VICTIM, "MEDIA_RETRY", msg_id=777001)
        query = sender.signed_query()
        assert await sender.post(photo, VICTIM, query=query) == (200, "success")
        assert await sender.send_raw(*sender.requests[-1]) == (200, "success")  # byte for byte
        assert await sender.post(photo, VICTIM, query=query) == (200, "success")  # same pair, encrypted anew
        assert await sender.post(photo, VICTIM) == (200, "success")  # a fresh pair
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(VICTIM)))
        await api.wait_for_text("deleted", VICTIM)
        privacy = sender.text_xml(VICTIM, "隐私", msg_id=777002)
        assert await sender.post(privacy, VICTIM) == (200, "success")
        await api.wait_for_text("保存期限", VICTIM)
        await quiet(api)
    assert [c.path for c in api.calls].count("/cgi-bin/media/get") == 1
    assert [m["msgtype"] for m in api.sent(VICTIM)].count("image") == 1

    # WeChat retries the /privacy message after Darkroom restarted: answered, not acted on again.
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        assert await sender.post(privacy, VICTIM) == (200, "success")
        await quiet(api)
    assert sum("保存期限" in t for t in api.texts(VICTIM)) == 1


async def test_the_replay_guard_fails_closed(fake_telegram, wechat_api, data_dir, engine, captured_logs):
    import sqlite3

    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):

        async def broken(*args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

        bot.storage.first_sight = broken
        assert (await sender.post(sender.text_xml(VICTIM, "开始"), VICTIM))[0] == 503
        assert (await sender.verify_url("echo"))[0] == 503
        assert await quiet(wechat_api) == 0
    stream, _ = captured_logs
    assert "the replay guard could not record it (OperationalError)" in stream.getvalue()
    assert "Traceback" not in stream.getvalue() and VICTIM not in stream.getvalue()


# -- encryption modes ----------------------------------------------------------------------------------


async def test_plaintext_is_refused_when_an_aes_key_is_configured(fake_telegram, wechat_api, data_dir, engine):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        assert bot.settings.wechat_encryption == "safe"
        plain = sender.text_xml(VICTIM, "开始")
        assert (await sender.post("", VICTIM, raw_body=plain.encode()))[0] == 403
        # Claiming encryption without msg_signature, or with a forged one, is refused too.
        query = sender.signed_query()
        encrypted = sender.crypto.encrypt_message(plain, query["nonce"], query["timestamp"]).encode()
        assert (await sender.post("", VICTIM, query={**query, "encrypt_type": "aes"}, raw_body=encrypted))[0] == 403
        assert await quiet(api) == 0
        assert await sender.post(plain, VICTIM) == (200, "success")  # encrypted by the sender: accepted
        await api.wait_for_text("你同意吗", VICTIM)


async def test_compatible_mode(fake_telegram, wechat_api, data_dir, engine):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine, compatible=True) as (bot, sender):
        assert bot.settings.wechat_encryption == "compatible"
        await consent_by_typing(api, sender)  # bodies with both the plaintext fields and Encrypt

        # The encrypted part is what counts; a plaintext part edited in transit changes nothing.
        query = sender.signed_query()
        inner = sender.text_xml(VICTIM, "隐私")
        envelope = sender.crypto.encrypt_message(inner, query["nonce"], query["timestamp"])
        import xmltodict

        fields = xmltodict.parse(envelope)["xml"]
        outer = sender.text_xml(CHOSEN, "删除我的数据").replace(
            "</xml>", f"<Encrypt><![CDATA[{fields['Encrypt']}]]></Encrypt></xml>"
        )
        signed = {**query, "encrypt_type": "aes", "msg_signature": fields["MsgSignature"]}
        assert await sender.post("", VICTIM, query=signed, raw_body=outer.encode()) == (200, "success")
        await api.wait_for_text("保存期限", VICTIM)
        assert api.sent(CHOSEN) == []

        # The encrypted part is verified whenever it is present, with or without encrypt_type.
        calls = await quiet(api)
        for extra in ({"encrypt_type": "aes", "msg_signature": "0" * 40}, {}):
            fresh = sender.signed_query()
            envelope = sender.crypto.encrypt_message(inner, fresh["nonce"], fresh["timestamp"])
            outer = sender.text_xml(VICTIM, "删除我的数据").replace(
                "</xml>", f"<Encrypt><![CDATA[{xmltodict.parse(envelope)['xml']['Encrypt']}]]></Encrypt></xml>"
            )
            assert (await sender.post("", VICTIM, query={**fresh, **extra}, raw_body=outer.encode()))[0] == 403
        assert await quiet(api) == calls
        assert not any("回执" in t for t in api.texts(VICTIM))


async def test_plain_mode_refuses_encrypted_requests_it_cannot_check(fake_telegram, wechat_api, data_dir, engine):
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):
        assert bot.settings.wechat_encryption == "plain"
        query = {**sender.signed_query(), "encrypt_type": "aes", "msg_signature": "0" * 40}
        body = b"<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>"
        assert (await sender.post("", VICTIM, query=query, raw_body=body))[0] == 400
    assert wechat_api.calls == []


# -- settings and the store --------------------------------------------------------------------------


def wechat_env(**extra: str) -> dict[str, str]:
    return {"WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": APPSECRET, **extra}


def test_encryption_settings():
    assert from_environment(wechat_env(), dotenv=None).wechat_encryption == "plain"
    assert from_environment(wechat_env(WECHAT_AES_KEY=AES_KEY), dotenv=None).wechat_encryption == "safe"
    settings = from_environment(wechat_env(WECHAT_AES_KEY=AES_KEY, WECHAT_ENCRYPTION="Compatible"), dotenv=None)
    assert settings.wechat_encryption == "compatible"
    assert settings.wechat_timestamp_window == 300
    for bad, message in (
        (dict(WECHAT_ENCRYPTION="safe"), "needs WECHAT_AES_KEY"),
        (dict(WECHAT_ENCRYPTION="compatible"), "needs WECHAT_AES_KEY"),
        (dict(WECHAT_AES_KEY=AES_KEY, WECHAT_ENCRYPTION="aes"), "'safe', 'compatible' or 'plain'"),
        (dict(WECHAT_AES_KEY=AES_KEY[:-1]), "43-character"),
        (dict(WECHAT_TIMESTAMP_WINDOW="5"), "WECHAT_TIMESTAMP_WINDOW"),
        (dict(WECHAT_TIMESTAMP_WINDOW="soon"), "WECHAT_TIMESTAMP_WINDOW"),
    ):
        with pytest.raises(SettingsError, match=message):
            from_environment(wechat_env(**bad), dotenv=None)


async def test_the_replay_store_expires_and_survives_a_restart(tmp_path: Path):
    path = tmp_path / "darkroom.sqlite3"
    secret = b"k" * 64
    storage = await Storage.open(path, secret)
    try:
        assert await storage.first_sight("pair", "body", expires_at=1_000, now=900) is None
        assert await storage.first_sight("pair", "other", expires_at=1_000, now=950) == "body"
    finally:
        await storage.close()
    storage = await Storage.open(path, secret)  # a restart: still known until it expires
    try:
        assert await storage.first_sight("pair", "other", expires_at=1_000, now=1_000) == "body"
        assert await storage.first_sight("later", "x", expires_at=2_000, now=1_001) is None
        assert [row[1] for row in await storage.dump()] == ["later"]  # "pair" was pruned at expiry
        assert await storage.first_sight("pair", "other", expires_at=2_000, now=1_002) is None
    finally:
        await storage.close()
