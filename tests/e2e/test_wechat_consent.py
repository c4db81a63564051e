"""Typed consent on WeChat: the record holds the text that was shown, the conversation follows
the language the person answered in, and agreeing again records nothing new."""

from __future__ import annotations

from handlers import consent
from handlers.texts import text_sha256
from tests.e2e.test_wechat_flow import OPENID, wechat_bot


async def test_typed_agree_under_a_chinese_notice(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        api.media["MEDIA_A"] = small_portrait
        await sender.post(sender.image_xml(OPENID, "MEDIA_A"), OPENID)
        shown = await api.wait_for_text("你同意吗", OPENID)
        assert "[同意]" in shown
        await sender.post(sender.text_xml(OPENID, "agree"), OPENID)
        picker = await api.wait_for_text("Pick a style", OPENID)  # in the language just used
        assert "[1] Impressionist" in picker
        await sender.post(sender.text_xml(OPENID, "ink"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)))
        caption = await api.wait_for_text("styled on this server", OPENID)
        assert "Ink wash" in caption
        pseudonym = bot.wechat._pseudonymize("wechat", "user", OPENID)
        record = await bot.storage.consent(pseudonym)

        # Typed again and again under the notice: one record.
        other = "oAnother_openid_typing_agree"
        await sender.post(sender.event_xml(other, "subscribe"), other)
        await api.wait_for_text("你同意吗", other)
        for _ in range(5):
            await sender.post(sender.text_xml(other, "agree"), other)
        await api.wait_for(lambda: sum("already agreed" in t for t in api.texts(other)) == 4)
        history = await bot.storage.consent_history(bot.wechat._pseudonymize("wechat", "user", other))
    notice_zh = consent.notice(bot.router._base.settings, "zh")
    assert notice_zh in shown, "the Chinese notice is the text that was shown"
    assert record.language == "zh"
    assert record.text_sha256 == text_sha256(notice_zh)
    assert len(history) == 1
