"""Group chats through the real python-telegram-bot."""

from __future__ import annotations

from tests.conftest import ALICE, BOB, CAROL, GROUP, running_bot


async def test_group_style_request_needs_authors_consent_and_answers_the_photo(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        photo = fake.photo_message(ALICE, GROUP, small_portrait)
        await fake.push({"message": photo})
        await fake.send_text_from(BOB, "/style@darkroom_test_bot pencil", chat_id=GROUP, reply_to=photo)
        notice = await fake.wait_for_text("needs to agree first", chat_id=GROUP)
        await fake.press(BOB, "consent:agree", message=notice.result, chat_id=GROUP)  # not the author
        await fake.wait_for("answerCallbackQuery", count=1)
        assert "getFile" not in fake.methods()
        await fake.press(ALICE, "consent:agree", message=notice.result, chat_id=GROUP)
        ask = await fake.wait_for_text("Only the sender of the photo can answer", chat_id=GROUP)
        yes = ask.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        await fake.press(BOB, yes, message=ask.result, chat_id=GROUP)
        await fake.wait_for("answerCallbackQuery", count=3)
        assert "getFile" not in fake.methods()
        await fake.press(ALICE, yes, message=ask.result, chat_id=GROUP)
        [reply] = await fake.wait_for("sendPhoto", chat_id=GROUP)
    assert reply.params["reply_parameters"]["message_id"] == photo["message_id"]
    assert "Pencil sketch" in reply.params["caption"]
    assert fake.calls_to("deleteMessage") == []


async def test_group_ignores_plain_photos_and_commands_for_other_bots(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.push({"message": fake.photo_message(ALICE, GROUP, small_portrait)})
        await fake.send_text_from(ALICE, "/help@some_other_bot", chat_id=GROUP)
        await fake.send_text_from(ALICE, "/help", chat_id=GROUP)
        await fake.wait_for_text("In groups I only act on commands", chat_id=GROUP)
    assert len(fake.calls_to("sendMessage", GROUP)) == 1


async def test_admin_switch_and_removal_from_group(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    fake.admins[GROUP] = {CAROL.id}
    async with running_bot(fake, data_dir, engine) as bot:
        await fake.send_text_from(ALICE, "/darkroom_off", chat_id=GROUP)
        await fake.wait_for_text("Only group admins", chat_id=GROUP)
        await fake.send_text_from(CAROL, "/darkroom_off", chat_id=GROUP)
        await fake.wait_for_text("now off", chat_id=GROUP)
        rows = await bot.storage.dump()
        assert any(r[0] == "groups" for r in rows)
        await fake.remove_bot_from(GROUP, CAROL)
        for _ in range(100):
            if not any(r[0] == "groups" for r in await bot.storage.dump()):
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert not any(r[0] == "groups" for r in await bot.storage.dump())
