"""'Full quality (file)': the signed result, held in memory for DARKROOM_FILE_TTL seconds, sent as
a document byte for byte (every label kept); gone kindly after the TTL or erasure; and erasure
wins the race with a file being sent."""

from __future__ import annotations

import asyncio
import dataclasses

from handlers.replies import SendDocument, SendPhotos, SendText
from tests.handlers.test_consent_truth import consented, deleted


async def uploaded(harness) -> None:
    """Wait for the file uploads the button started (they run beside the person's lane)."""
    from handlers.files import _FILE_UPLOADS

    if _FILE_UPLOADS:
        await asyncio.wait(list(_FILE_UPLOADS), timeout=10)


def styled(harness) -> bytes:
    return harness.platform.last(SendPhotos).photos[0].jpeg


async def styled_photo(harness, person, photo) -> bytes:
    await harness.photo(person, photo, caption="ink")
    await harness.idle()
    assert "file:" in harness.platform.button_data(), "no Full quality (file) button under the result"
    return styled(harness)


async def test_the_button_sends_the_result_as_a_file_byte_for_byte(harness, small_portrait):
    alice = await consented(harness)
    result = await styled_photo(harness, alice, small_portrait)
    assert harness.ctx.memory.held_count(alice.pseudonym) == 1  # the result, in memory only
    await harness.press(alice, "file:")
    await uploaded(harness)
    document = harness.platform.last(SendDocument)
    assert document.data == result  # labels and credentials intact: the very bytes of the result
    assert document.filename.endswith(".jpg")
    # One file per result: then it is released, and a second press is answered kindly.
    assert harness.ctx.memory.held_count(alice.pseudonym) == 0
    await harness.press(alice, "file:")
    await uploaded(harness)
    assert "no longer hold" in harness.platform.last(SendText).text
    assert len(harness.platform.replies(SendDocument)) == 1


async def test_after_the_ttl_the_button_says_to_send_the_photo_again(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, file_ttl=1)
    alice = await consented(harness, language="zh")
    await styled_photo(harness, alice, small_portrait)
    await asyncio.sleep(1.2)
    await harness.press(alice, "file:")
    assert "重新发送照片" in harness.platform.last(SendText).text
    assert harness.platform.replies(SendDocument) == []
    assert harness.ctx.memory.sweep() == 1  # and the sweep releases it
    assert harness.ctx.memory.held_results == {}


async def test_no_button_when_the_ttl_is_zero(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, file_ttl=0)
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert "file:" not in harness.platform.button_data()
    assert harness.ctx.memory.held_results == {}


async def test_erasure_releases_the_held_result_and_counts_it(harness, small_portrait):
    alice = await consented(harness)
    await styled_photo(harness, alice, small_portrait)
    [held] = harness.ctx.memory.held_results.values()
    buffer = held.buffers[0]
    await harness.command(alice, "/delete_my_data")
    assert "photos held in memory released: 1" in harness.platform.last(SendText).text
    assert buffer.released
    await harness.press(alice, "file:")
    assert "no longer hold" in harness.platform.last(SendText).text
    assert harness.platform.replies(SendDocument) == []


async def test_erasure_wins_the_race_with_a_file_being_sent(harness, small_portrait):
    alice = await consented(harness)
    await styled_photo(harness, alice, small_portrait)
    [held] = harness.ctx.memory.held_results.values()
    buffer = held.buffers[0]
    harness.platform.delays[SendDocument] = 1.0
    await harness.press(alice, "file:")
    await asyncio.wait_for(harness.platform.started.setdefault(SendDocument, asyncio.Event()).wait(), 30)
    await harness.command(alice, "/delete_my_data")  # while the file uploads
    receipt = harness.platform.last(SendText).text
    assert "photos held in memory released: 1" in receipt and "Nothing about you is left" in receipt
    assert buffer.released
    await uploaded(harness)
    [landed] = [s for s in harness.platform.sent if isinstance(s.reply, SendDocument)]
    assert landed.ref in deleted(harness), "the file stayed in the chat after erasure"
    assert "already on its way" in harness.platform.texts()[-1]
    assert harness.ctx.memory.held_results == {}


async def test_the_file_follows_the_reply_ttl(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, reply_ttl=3600)
    alice = await consented(harness)
    await styled_photo(harness, alice, small_portrait)
    await harness.press(alice, "file:")
    await uploaded(harness)
    [landed] = [s for s in harness.platform.sent if isinstance(s.reply, SendDocument)]
    assert landed.ref in [m for _, m in await harness.storage.replies_of(alice.pseudonym)]


def test_the_consent_notice_says_the_styled_picture_is_held_and_for_how_long():
    from handlers import consent
    from handlers.context import ConversationSettings

    held = ConversationSettings(file_ttl=60)
    assert "stays in memory for 60 seconds" in consent.notice(held, "en")
    assert "保留 60 秒" in consent.notice(held, "zh")
    none = ConversationSettings(file_ttl=0)
    assert "stays in memory" not in consent.notice(none, "en")
    assert consent.current_version(held) != consent.current_version(none)  # changing it asks again
