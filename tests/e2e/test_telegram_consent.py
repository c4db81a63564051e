"""Consent and erasure through the real python-telegram-bot: forwarded photos, commands for
another bot, personal data in groups, and an erasure while the styled photo is uploading."""

from __future__ import annotations

from tests.conftest import ALICE, BOB, CAROL, GROUP, running_bot


async def test_erasure_while_the_styled_photo_uploads_deletes_it_when_it_lands(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    fake.delays["sendPhoto"] = 2.0
    async with running_bot(fake, data_dir, engine) as bot:
        await fake.consent_with_style(ALICE)
        selfie = await fake.send_photo_from(ALICE, small_portrait)
        await fake.wait_for_arrival("sendPhoto")  # the styled photo is on its way
        await fake.send_text_from(ALICE, "/delete_my_data")
        receipt = await fake.wait_for_text("Receipt", chat_id=ALICE.id)
        [photo] = await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        landed = photo.result["message_id"]
        await fake.wait_for(
            "deleteMessage", chat_id=ALICE.id, timeout=10, where=lambda c: int(c.params["message_id"]) == landed
        )
        follow_up = await fake.wait_for_text("already on its way", chat_id=ALICE.id, timeout=10)
        assert await bot.storage.dump() == []
    order = fake.calls.index  # calls are listed as they complete
    assert order(receipt) < order(photo), "the photo was meant to land after the receipt"
    deleted = {int(c.params["message_id"]) for c in fake.calls_to("deleteMessage", ALICE.id)}
    assert selfie["message_id"] in deleted, "the selfie stayed in the chat"
    assert order(follow_up) > order(photo)


async def test_a_photo_forwarded_from_someone_else_is_refused_kindly(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent_with_style(ALICE)
        for origin in (BOB, "hidden", "chat", "channel"):
            await fake.push({"message": fake.photo_message(ALICE, ALICE.id, small_portrait, forwarded_from=origin)})
        refusals = await fake.wait_for(
            "sendMessage", count=4, chat_id=ALICE.id, where=lambda c: "forwarded from someone else" in c.params["text"]
        )
        assert "getFile" not in fake.methods()
        assert len(refusals) == 4
        # Forwarding one's own photo is still one's own photo.
        await fake.push({"message": fake.photo_message(ALICE, ALICE.id, small_portrait, forwarded_from=ALICE)})
        [reply] = await fake.wait_for("sendPhoto", chat_id=ALICE.id)
    assert "Ink wash" in reply.params["caption"]


async def test_style_on_a_forwarded_photo_in_a_group_is_refused(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent(BOB)
        forwarded = fake.photo_message(BOB, GROUP, small_portrait, forwarded_from=CAROL)
        await fake.push({"message": forwarded})
        await fake.send_text_from(BOB, "/style ink", chat_id=GROUP, reply_to=forwarded)
        await fake.wait_for_text("转发", chat_id=GROUP)  # Bob reads Chinese
        captioned = fake.photo_message(BOB, GROUP, small_portrait, caption="/style ink", forwarded_from="hidden")
        await fake.push({"message": captioned})
        await fake.wait_for("sendMessage", count=2, chat_id=GROUP, where=lambda c: "转发" in c.params["text"])
    assert "getFile" not in fake.methods()
    assert not any("只有照片的发送者可以回答" in c.params["text"] for c in fake.calls_to("sendMessage", GROUP))


async def test_a_caption_command_for_another_bot_is_ignored(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent(ALICE)
        await fake.push({"message": fake.photo_message(ALICE, GROUP, small_portrait, caption="/style@other_bot ink")})
        await fake.push({"message": fake.photo_message(ALICE, GROUP, small_portrait, caption="/style@darkroom_test_bot ink")})
        await fake.wait_for_text("Only the sender of the photo can answer", chat_id=GROUP)
        await fake.send_text_from(ALICE, "/privacy@other_bot", chat_id=GROUP)
        await fake.send_text_from(ALICE, "/help", chat_id=GROUP)
        await fake.wait_for_text("In groups I only act on commands", chat_id=GROUP)
    assert len(fake.calls_to("sendMessage", GROUP)) == 2, [c.params["text"] for c in fake.calls_to("sendMessage", GROUP)]


async def test_personal_data_is_never_posted_in_a_group(fake_telegram, data_dir, engine):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent_with_style(ALICE)
        await fake.send_text_from(ALICE, "/my_data", chat_id=GROUP)
        await fake.send_text_from(ALICE, "/privacy", chat_id=GROUP)
        await fake.wait_for("sendMessage", count=2, chat_id=GROUP)
        await fake.send_text_from(ALICE, "/my_data")
        await fake.wait_for("sendDocument", chat_id=ALICE.id)
    assert fake.calls_to("sendDocument", GROUP) == []
    texts = [c.params["text"] for c in fake.calls_to("sendMessage", GROUP)]
    assert all("private chat" in text for text in texts)
    assert not any("Ink" in text or "given on" in text or "pseudonym" in text for text in texts)
