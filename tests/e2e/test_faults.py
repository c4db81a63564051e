"""Faults: the platform API goes away and comes back; the bot recovers by itself."""

from __future__ import annotations

from tests.conftest import ALICE, BOB, running_bot
from tests.e2e.test_wechat_flow import OPENID, consent_by_typing, wechat_bot


async def test_telegram_api_outage_then_recovery(fake_telegram, data_dir, engine, small_portrait, captured_logs):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.send_text_from(ALICE, "/start")
        await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        await fake.outage(6.0)  # connections refused while it is down
        await fake.press(ALICE, "consent:agree")
        await fake.wait_for_text("Thank you", chat_id=ALICE.id, timeout=60)
        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake.wait_for("sendPhoto", chat_id=ALICE.id, timeout=60)
    stream, _ = captured_logs
    assert "Traceback" not in stream.getvalue()


async def test_telegram_api_errors_during_a_job_then_the_next_photo_works(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        for user in (ALICE, BOB):
            await fake.send_text_from(user, "/start")
            await fake.wait_for_text("Do you agree?" if user is ALICE else "你同意吗", chat_id=user.id)
            await fake.press(user, "consent:agree")
        await fake.wait_for("answerCallbackQuery", count=2)
        fake.down = True  # every call answers 502 while styling is under way
        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        import asyncio

        await asyncio.sleep(4)
        fake.down = False
        await fake.send_photo_from(BOB, small_portrait, caption="ink")
        await fake.wait_for("sendPhoto", chat_id=BOB.id, timeout=60)


async def test_wechat_api_down_then_back(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        await consent_by_typing(api, sender)
        api.down = True
        api.media["M9"] = small_portrait
        await sender.post(sender.text_xml(OPENID, "风格 水墨"), OPENID)
        await sender.post(sender.image_xml(OPENID, "M9"), OPENID)
        import asyncio

        await asyncio.sleep(2)
        api.down = False
        api.media["M10"] = small_portrait
        await sender.post(sender.image_xml(OPENID, "M10"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)), timeout=60)


async def test_a_reply_that_cannot_be_delivered_is_dropped_and_the_input_released(
    fake_telegram, data_dir, engine, small_portrait, captured_logs
):
    from tests.fakes.telegram_api import Failure

    fake = fake_telegram
    async with running_bot(fake, data_dir, engine) as bot:
        await fake.consent(ALICE)
        fake.failures.append(Failure("sendPhoto", "bad_request", times=1, description="Bad Request: PHOTO_INVALID_DIMENSIONS"))
        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake.wait_for("sendPhoto!bad_request")
        await fake.wait_for_edit("something went wrong", chat_id=ALICE.id)
        assert bot.router.memory.held_inputs == {}
        # ... and the next photo is delivered.
        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake.wait_for("sendPhoto", chat_id=ALICE.id)
    stream, _ = captured_logs
    assert "could not deliver a styled photo on telegram: PHOTO_INVALID_DIMENSIONS" not in stream.getvalue()
    assert "could not deliver a styled photo on telegram" in stream.getvalue()
