"""WeChat Official Account end to end: callbacks built and signed (and encrypted) as WeChat's
servers do, posted to the running aiohttp app; a fake WeChat API on 127.0.0.1 reached through
WECHAT_API_URL; Telegram enabled in the same process."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from PIL import Image

from tests.conftest import ALICE, running_bot
from tests.e2e.test_telegram_modes import free_port
from tests.fakes.wechat_api import AES_KEY, APPID, APPSECRET, TOKEN, WeChatSender

OPENID = "oXyZ_openid_of_wang_li_12345"


@contextlib.asynccontextmanager
async def wechat_bot(
    fake_telegram, wechat_api, data_dir, engine, safe_mode: bool = False, compatible: bool = False, **overrides
):
    port = free_port()
    env = dict(
        WECHAT_TOKEN=TOKEN,
        WECHAT_APPID=APPID,
        WECHAT_SECRET=APPSECRET,
        WECHAT_API_URL=wechat_api.url,
        DARKROOM_HTTP_PORT=str(port),
    )
    if safe_mode or compatible:
        env["WECHAT_AES_KEY"] = AES_KEY
    if compatible:
        env["WECHAT_ENCRYPTION"] = "compatible"
    env.update(overrides)
    async with running_bot(fake_telegram, data_dir, engine, **env) as bot:
        sender = WeChatSender(
            f"http://127.0.0.1:{port}/wechat", aes_key=AES_KEY if safe_mode or compatible else None, compatible=compatible
        )
        yield bot, sender


async def consent_by_typing(api, sender, openid=OPENID):
    assert (await sender.post(sender.event_xml(openid, "subscribe"), openid))[0] == 200
    notice = await api.wait_for_text("你同意吗", openid)
    assert "[同意]" in notice
    await sender.post(sender.text_xml(openid, "同意"), openid)
    await api.wait_for_text("谢谢", openid)


async def test_url_verification_and_forged_signatures(fake_telegram, wechat_api, data_dir, engine):
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):
        assert await sender.verify_url("echo-12345") == (200, "echo-12345")
        forged = {**sender.signed_query(), "signature": "0" * 40}
        assert (await sender.verify_url("echo", query=forged))[0] == 403
        status, _ = await sender.post(sender.text_xml(OPENID, "/start"), OPENID, query=forged)
        assert status == 403
    assert wechat_api.calls == [], "a forged request reached the API"


async def test_plain_mode_consent_by_typing_then_styled_image(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        api.media["MEDIA_1"] = small_portrait
        # A photo before consent: the notice, and no media/get.
        assert (await sender.post(sender.image_xml(OPENID, "MEDIA_1"), OPENID)) == (200, "success")
        await api.wait_for_text("你同意吗", OPENID)
        assert "/cgi-bin/media/get" not in api.paths()
        await sender.post(sender.text_xml(OPENID, "同意"), OPENID)
        picker = await api.wait_for_text("[1] 印象派", OPENID)
        assert "[15] 胶片" in picker  # every style can be typed, no paging
        assert "/cgi-bin/media/get" not in api.paths()
        await sender.post(sender.text_xml(OPENID, "3"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)))
        await api.wait_for_text("水墨", OPENID)
    [image] = [m for m in api.sent(OPENID) if m["msgtype"] == "image"]
    out = api.uploads[image["image"]["media_id"]]
    styled = np.asarray(Image.open(io.BytesIO(out)).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(io.BytesIO(small_portrait)).convert("RGB"), dtype=np.int16)
    assert styled.shape == original.shape and np.abs(styled - original).mean() > 8
    uploads = [c for c in api.calls if c.path.endswith("media/upload")]
    assert all(c.params["type"] == "image" for c in uploads)  # temporary media, never permanent
    texts = api.texts(OPENID)
    assert not any("正在处理" in t for t in texts), "status steps must not become a stream of messages"


async def test_retried_msgid_is_styled_once(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        await sender.post(sender.text_xml(OPENID, "/style ink"), OPENID)
        await api.wait_for_text("Ink wash", OPENID)
        api.media["MEDIA_R"] = small_portrait
        xml = sender.image_xml(OPENID, "MEDIA_R", msg_id=424242)
        for _ in range(3):  # WeChat's retries of one message
            assert await sender.post(xml, OPENID) == (200, "success")
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)))
        await api.wait_for_text("deleted", OPENID)
    assert [c.path for c in api.calls].count("/cgi-bin/media/get") == 1
    assert [m["msgtype"] for m in api.sent(OPENID)].count("image") == 1


async def test_safe_mode_encrypted_callbacks(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        await consent_by_typing(api, sender)
        api.media["MEDIA_S"] = small_portrait
        await sender.post(sender.text_xml(OPENID, "/style pencil"), OPENID)
        await sender.post(sender.image_xml(OPENID, "MEDIA_S"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)))
        # A forged message signature on an encrypted body is refused.
        query = sender.signed_query()
        encrypted = sender.crypto.encrypt_message(sender.text_xml(OPENID, "/delete_my_data"), query["nonce"], query["timestamp"])
        forged = {**query, "encrypt_type": "aes", "msg_signature": "f" * 40}
        status, _ = await sender.post("", OPENID, query=forged, raw_body=encrypted.encode())
        assert status == 403
        assert not any("回执" in t for t in api.texts(OPENID))


async def test_expired_token_is_refreshed_once(fake_telegram, wechat_api, data_dir, engine):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        assert api.tokens_issued == 1
        api.expire_tokens()
        await sender.post(sender.text_xml(OPENID, "/styles"), OPENID)
        await api.wait_for_text("Faithful styles", OPENID)
    assert api.tokens_issued == 2


async def test_delete_my_data_by_chinese_alias_and_unsubscribe(fake_telegram, wechat_api, data_dir, engine):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        await sender.post(sender.text_xml(OPENID, "风格 水墨"), OPENID)
        await api.wait_for_text("水墨", OPENID)
        assert await bot.storage.dump(replay_guard=False) != []
        await sender.post(sender.text_xml(OPENID, "删除我的数据"), OPENID)
        receipt = await api.wait_for_text("回执", OPENID)
        assert "同意记录：2" in receipt and "偏好设置：1" in receipt
        assert await bot.storage.dump(replay_guard=False) == []
        pseudonym = bot.wechat._pseudonymize("wechat", "user", OPENID)
        assert pseudonym not in bot.wechat.people.language and pseudonym not in bot.wechat.people.last_message
        await consent_by_typing(api, sender, "oAnother_openid_987")
        assert await bot.storage.dump(replay_guard=False) != []
        await sender.post(sender.event_xml("oAnother_openid_987", "unsubscribe"), "oAnother_openid_987")
        for _ in range(100):
            if await bot.storage.dump(replay_guard=False) == []:
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert await bot.storage.dump(replay_guard=False) == []


async def test_english_when_the_person_writes_english_commands(fake_telegram, wechat_api, data_dir, engine):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await sender.post(sender.text_xml(OPENID, "/start"), OPENID)
        notice = await api.wait_for_text("Do you agree?", OPENID)
        assert "[agree]" in notice
        await sender.post(sender.text_xml(OPENID, "agree"), OPENID)
        await api.wait_for_text("Thank you", OPENID)


async def test_xml_bombs_and_malformed_xml_are_rejected(fake_telegram, wechat_api, data_dir, engine):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        f"<xml><ToUserName>a</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"
    )
    external = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        f"<xml><FromUserName>{OPENID}</FromUserName><MsgType>text</MsgType><Content>&e;</Content></xml>"
    )
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):
        for body in (bomb, external, "<xml><unclosed>", "not xml at all"):
            status, _ = await sender.post(body, OPENID)
            assert status == 400
    assert wechat_api.calls == []


async def test_both_platforms_in_one_process(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        await fake_telegram.send_photo_from(ALICE, small_portrait, caption="film")
        await fake_telegram.wait_for_text("Do you agree?", chat_id=ALICE.id)
        await fake_telegram.press(ALICE, "consent:agree")
        await fake_telegram.wait_for("sendPhoto", chat_id=ALICE.id)
        rows = await bot.storage.dump()
    consents = [r for r in rows if r[0] == "consents"]
    assert len(consents) == 2  # one person per platform, each under its own pseudonym


async def test_outside_the_customer_service_window_replies_are_logged_and_dropped(
    fake_telegram, wechat_api, data_dir, engine, captured_logs
):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        sent_before = len(api.sent(OPENID))
        # The person's last message was 49 hours ago: a late reply must not be pushed.
        from bot.platforms.wechat.client import PLATFORM
        from handlers.events import Address
        from handlers.replies import SendText

        pseudonym = bot.wechat._pseudonymize(PLATFORM, "user", OPENID)
        bot.wechat.people.last_message[pseudonym] -= 49 * 3600
        await bot.wechat.send(Address(PLATFORM, OPENID), SendText("late reply"))
    assert len(api.sent(OPENID)) == sent_before
    stream, _ = captured_logs
    assert "outside the 48-hour customer-service window" in stream.getvalue()
    assert OPENID not in stream.getvalue()


async def test_my_data_and_privacy_on_wechat(fake_telegram, wechat_api, data_dir, engine):
    import json

    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        await sender.post(sender.text_xml(OPENID, "我的数据"), OPENID)
        text = await api.wait_for_text("Darkroom 保存的关于你的全部数据", OPENID)
        document = json.loads(text.split("\n", 1)[1])
        assert document["consent"]["valid_now"] is True and document["pseudonym"] != OPENID
        await sender.post(sender.text_xml(OPENID, "隐私"), OPENID)
        await api.wait_for_text("保存期限", OPENID)
        await sender.post(sender.text_xml(OPENID, "撤回同意"), OPENID)
        await api.wait_for_text("已撤回同意", OPENID)
        assert await bot.storage.dump(replay_guard=False) == []


async def test_oversized_wechat_body_is_refused(fake_telegram, wechat_api, data_dir, engine):
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):
        status, _ = await sender.post("", OPENID, raw_body=b"<xml>" + b"a" * (2 * 1024 * 1024) + b"</xml>")
        assert status == 413
    assert wechat_api.calls == []


async def test_nested_xml_is_a_400_never_a_500(fake_telegram, wechat_api, data_dir, engine, captured_logs):
    fields = {
        "ToUserName": "gh_account",
        "FromUserName": OPENID,
        "CreateTime": "1700000000",
        "MsgType": "text",
        "Content": "hello",
        "MsgId": "42",
    }

    def message(**nested: str) -> str:
        parts = "".join(f"<{k}>{nested.get(k, v)}</{k}>" for k, v in fields.items())
        return f"<xml>{parts}</xml>"

    bodies = [message(**{name: "<a><b>x</b><b>y</b></a>"}) for name in fields]
    bodies.append(message(Content="<a>" * 50_000 + "</a>" * 50_000))
    bodies.append("<xml>" + "<a>" * 50_000 + "</a>" * 50_000 + "</xml>")
    bodies.append(message().replace("<MsgType>text</MsgType>", "<MsgType>text</MsgType><MsgType>image</MsgType>"))
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):
        for body in bodies:
            status, _ = await sender.post(body, OPENID)
            assert status == 400, body[:200]
        # Still serving: a well-formed message is answered.
        assert await sender.post(sender.event_xml(OPENID, "subscribe"), OPENID) == (200, "success")
        await wechat_api.wait_for_text("你同意吗", OPENID)
    stream, records = captured_logs
    assert "Traceback" not in stream.getvalue()
    assert not [r for r in records if r.levelno >= 40], "a nested message reached the handlers"


async def test_nested_xml_inside_the_safe_mode_envelope_is_a_400(fake_telegram, wechat_api, data_dir, engine):
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine, safe_mode=True) as (bot, sender):
        nested = sender.text_xml(OPENID, "hi").replace(f"<![CDATA[{OPENID}]]>", "<a><b>x</b></a>")
        assert (await sender.post(nested, OPENID))[0] == 400
        query = {**sender.signed_query(), "encrypt_type": "aes", "msg_signature": "0" * 40}
        envelope = "<xml><ToUserName>gh</ToUserName><Encrypt><a>x</a></Encrypt></xml>"
        assert (await sender.post("", OPENID, query=query, raw_body=envelope.encode()))[0] == 400
        assert await sender.post(sender.event_xml(OPENID, "subscribe"), OPENID) == (200, "success")
    assert [c for c in wechat_api.calls if "custom/send" in c.path]
