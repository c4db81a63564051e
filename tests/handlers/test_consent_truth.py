"""Consent that means what it says (versioned answers, the text shown, "No" that withdraws,
idempotent agreement, groups) and erasure that wins every race (upload in flight, the selfie
deleted on every path). Neutral events only."""

from __future__ import annotations

import asyncio
import dataclasses

from handlers import consent
from handlers.events import PhotoEvent
from handlers.replies import DeleteMessage, EditText, SendDocument, SendPhotos, SendText
from handlers.texts import text_sha256


async def consented(harness, name="alice", language="en"):
    person = harness.person(name, language)
    await harness.agree(person)
    return person


def deleted(harness) -> list:
    return [r.target for r in harness.platform.replies(DeleteMessage)]


# -- versioned answers ---------------------------------------------------------------------------


async def test_agree_under_a_notice_whose_terms_changed_shows_the_new_notice(harness, small_portrait):
    alice = harness.person()
    await harness.photo(alice, small_portrait, caption="ink")
    old_agree = harness.shown("consent:agree")
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, input_ttl=60)
    await harness.press(alice, old_agree)
    await harness.idle()
    assert await harness.storage.consent(alice.pseudonym) is None, "consent to the old terms was recorded"
    assert harness.platform.fetched == []
    renewed = harness.platform.last(EditText)
    assert "changed since you were shown it" in renewed.text and "60 seconds" in renewed.text
    new_agree = harness.shown("consent:agree")
    assert new_agree != old_agree
    await harness.press(alice, new_agree)  # the photo waited, and goes on now
    await harness.idle()
    record = await harness.storage.consent(alice.pseudonym)
    assert record.version == consent.current_version(harness.ctx.settings)
    assert "Ink wash" in harness.platform.last(SendPhotos).photos[0].caption


async def test_typed_agree_after_a_chinese_notice_records_the_chinese_text_and_replies_in_english(harness, small_portrait):
    # WeChat: the notice went out in Chinese; the person types "agree", and the adapter now
    # knows them as an English speaker.
    wang_zh = harness.person("wang", language="zh")
    await harness.photo(wang_zh, small_portrait)
    assert "你同意吗" in harness.platform.last(SendText).text
    wang_en = dataclasses.replace(wang_zh, language="en")
    await harness.text(wang_en, "agree")
    record = await harness.storage.consent(wang_zh.pseudonym)
    assert record.language == "zh"
    assert record.text_sha256 == text_sha256(consent.notice(harness.ctx.settings, "zh"))
    picker = harness.platform.last(SendText)
    assert picker.text.startswith("Pick a style"), picker.text
    await harness.text(wang_en, "ink")
    await harness.idle()
    assert "Ink wash" in harness.platform.last(SendPhotos).photos[0].caption


async def test_repeated_agreement_writes_one_record(harness):
    alice = harness.person()
    await harness.command(alice, "/start")
    for _ in range(60):
        await harness.text(alice, "agree")
    assert len(await harness.storage.consent_history(alice.pseudonym)) == 1
    assert "already agreed" in harness.platform.last(SendText).text


# -- "No" withdraws --------------------------------------------------------------------------------


async def test_no_on_an_old_notice_after_agreeing_withdraws_consent_with_a_receipt(harness, small_portrait):
    alice = harness.person()
    await harness.command(alice, "/start")
    old_no = harness.shown("consent:no")
    await harness.agree(alice)
    await harness.command(alice, "/style ink")
    assert await harness.storage.rows_of(alice.pseudonym) == 3
    await harness.press(alice, old_no)
    assert await harness.storage.rows_of(alice.pseudonym) == 0
    answer = harness.platform.last(EditText).text
    assert "kept nothing" not in answer
    assert "Consent withdrawn." in answer and "consent records: 2" in answer and "preferences: 1" in answer
    await harness.photo(alice, small_portrait)
    await harness.idle()
    assert harness.platform.fetched == [], "a photo was styled after consent was withdrawn"
    assert "Do you agree?" in harness.platform.last(SendText).text


async def test_a_bystanders_no_in_a_group_changes_nothing(harness, small_portrait):
    alice, bob, group = harness.person(), await consented(harness, "bob"), harness.group()
    await harness.photo(alice, small_portrait, chat=group, caption="/style ink")
    await harness.press(bob, harness.shown("consent:no"), chat=group)
    assert await consent.has_consent(harness.ctx, bob)
    assert alice.pseudonym in harness.ctx.memory.awaiting_consent


# -- groups ------------------------------------------------------------------------------------------


async def test_my_data_and_privacy_in_a_group_point_to_the_private_chat(harness):
    alice, group = await consented(harness), harness.group()
    await harness.command(alice, "/style ink")
    before = len(harness.platform.sent)
    await harness.command(alice, "/my_data", chat=group)
    await harness.command(alice, "/privacy", chat=group)
    said = harness.platform.sent[before:]
    assert not any(isinstance(s.reply, SendDocument) for s in said)
    texts = [s.reply.text for s in said]
    assert len(texts) == 2 and all("private chat" in text for text in texts)
    assert not any(alice.pseudonym in text or "Ink" in text or "given on" in text for text in texts)
    await harness.command(alice, "/my_data")  # in private it still works
    assert isinstance(harness.platform.sent[-1].reply, SendDocument)


async def test_a_photo_forwarded_from_someone_else_is_not_styled(harness, small_portrait):
    alice, group = await consented(harness), harness.group()
    await harness.command(alice, "/style ink")
    chat = harness.private(alice)
    forwarded = PhotoEvent(alice, chat, harness.message(chat), photos=(harness.photo_ref(small_portrait),), from_someone_else=True)
    await harness.dispatch(forwarded)
    await harness.idle()
    assert harness.platform.fetched == []
    assert "forwarded from someone else" in harness.platform.last(SendText).text
    in_group = PhotoEvent(alice, group, harness.message(group), photos=(harness.photo_ref(small_portrait),),
                          caption="/style ink", from_someone_else=True)
    await harness.dispatch(in_group)
    bob = await consented(harness, "bob")
    await harness.command(bob, "/style ink", chat=group, reply_to=in_group)
    await harness.idle()
    assert harness.platform.fetched == []
    assert not any("Say yes only if" in text for text in harness.platform.texts())


async def test_a_caption_for_another_bot_is_not_for_us(harness, small_portrait):
    alice, group = await consented(harness), harness.group()
    await harness.photo(alice, small_portrait, chat=group, caption="/style@other_bot ink")
    await harness.idle()
    assert [s for s in harness.platform.sent if s.chat == group.address] == []


# -- erasure wins every race ---------------------------------------------------------------------------


async def test_erasure_while_the_styled_photo_uploads_deletes_it_when_it_lands(harness, small_portrait):
    alice = await consented(harness)
    harness.platform.delays[SendPhotos] = 1.0
    photo = await harness.photo(alice, small_portrait, caption="ink")
    await asyncio.wait_for(harness.platform.started.setdefault(SendPhotos, asyncio.Event()).wait(), 30)
    await harness.command(alice, "/delete_my_data")
    receipt = harness.platform.last(SendText).text
    assert "Nothing about you is left" in receipt
    assert "queued or running jobs cancelled: 1" in receipt and "your photo messages deleted from our chat: 1" in receipt
    await harness.idle()
    await asyncio.sleep(1.5)  # the upload lands after the receipt
    [delivered] = [s for s in harness.platform.sent if isinstance(s.reply, SendPhotos)]
    assert delivered.ref in deleted(harness), "the styled photo stayed in the chat after erasure"
    assert photo.message in deleted(harness), "the selfie stayed in the chat after erasure"
    assert "already on its way" in harness.platform.texts()[-1]
    assert await harness.storage.rows_of(alice.pseudonym) == 0


async def test_selfie_is_deleted_when_declined(harness, small_portrait):
    alice = harness.person()
    photo = await harness.photo(alice, small_portrait)
    await harness.press(alice, harness.shown("consent:no"))
    assert deleted(harness) == [photo.message]


async def test_selfie_is_deleted_when_refused_as_damaged(harness, small_portrait):
    alice = await consented(harness)
    photo = await harness.photo(alice, small_portrait[: len(small_portrait) // 3], caption="ink")
    await harness.idle()
    assert "seems damaged" in harness.platform.last(EditText).text
    assert deleted(harness) == [photo.message]


async def test_selfie_is_deleted_when_erased_while_waiting(harness, small_portrait):
    alice, bob = harness.person(), await consented(harness, "bob")
    waiting_for_consent = await harness.photo(alice, small_portrait)
    waiting_for_style = await harness.photo(bob, small_portrait)
    await harness.command(alice, "/delete_my_data")
    await harness.command(bob, "/delete_my_data")
    assert deleted(harness) == [waiting_for_consent.message, waiting_for_style.message]
    assert "your photo messages deleted from our chat: 1" in harness.platform.last(SendText).text


async def test_selfie_is_deleted_when_everyone_agreed_is_answered_no(harness, two_faces):
    alice = await consented(harness)
    photo = await harness.photo(alice, two_faces, caption="ink")
    await harness.idle()
    assert deleted(harness) == [], "the photo waits for the answer"
    await harness.press(alice, "faces:no")
    assert deleted(harness) == [photo.message]


async def test_selfie_is_kept_when_the_operator_says_so(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, delete_selfie=False)
    alice = harness.person()
    await harness.photo(alice, small_portrait)
    await harness.press(alice, harness.shown("consent:no"))
    await harness.agree(alice)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert deleted(harness) == []


async def test_selfie_is_deleted_when_refused_as_too_large_or_busy(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, max_input_bytes=1024)
    alice = await consented(harness)
    too_large = await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert "too large" in harness.platform.last(SendText).text
    assert deleted(harness) == [too_large.message]
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, max_input_bytes=20 * 1024 * 1024)
    bob = await consented(harness, "bob")
    await harness.queue.stop(grace=0)  # a closed queue takes nothing: the next photo is refused
    busy = await harness.photo(bob, small_portrait, caption="ink")
    assert "restarting" in harness.platform.last(SendText).text
    assert deleted(harness) == [too_large.message, busy.message]


async def test_selfie_is_deleted_when_a_new_photo_replaces_it(harness, small_portrait):
    alice = await consented(harness)
    first = await harness.photo(alice, small_portrait)  # waits for a style
    await harness.photo(alice, small_portrait)
    assert deleted(harness) == [first.message]
    await harness.press(alice, "pick:ink")
    await harness.idle()
    assert len(harness.platform.fetched) == 1
