"""Other people in the photo, the bot's own replies expiring, and what /delete_my_data does to them."""

from __future__ import annotations

import dataclasses
import time

from handlers.replies import DeleteMessage, SendPhotos, SendText


async def consented(harness, name="alice"):
    person = harness.person(name)
    await harness.agree(person)
    return person


async def test_several_faces_need_everyone_agreed_before_styling(harness, two_faces):
    alice = await consented(harness)
    await harness.photo(alice, two_faces, caption="ink")
    await harness.idle()
    ask = harness.platform.last(SendText)
    assert "I can see 2 faces" in ask.text
    assert harness.platform.replies(SendPhotos) == []
    [buffer] = harness.platform.buffers
    assert any(buffer), "the downloaded photo waits in memory for the answer"
    await harness.press(alice, "faces:yes")
    await harness.idle()
    assert "Ink wash" in harness.platform.last(SendPhotos).photos[0].caption
    assert len(harness.platform.fetched) == 1, "no second download"
    assert not any(buffer)


async def test_no_to_everyone_agreed_deletes_the_photo(harness, two_faces):
    alice = await consented(harness)
    await harness.photo(alice, two_faces, caption="ink")
    await harness.idle()
    [buffer] = harness.platform.buffers
    await harness.press(alice, "faces:no")
    assert not any(buffer)
    assert "won't style it" in harness.platform.texts()[-1]
    assert harness.platform.replies(SendPhotos) == []


async def test_delete_my_data_releases_a_photo_waiting_for_confirmation(harness, two_faces):
    alice = await consented(harness)
    await harness.photo(alice, two_faces, caption="ink")
    await harness.idle()
    [buffer] = harness.platform.buffers
    await harness.command(alice, "/delete_my_data")
    assert not any(buffer)
    assert "photos held in memory released: 1" in harness.platform.last(SendText).text


async def test_one_face_is_styled_without_asking(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert harness.platform.replies(SendPhotos)
    assert not any("faces" in t for t in harness.platform.texts())


async def test_reply_ttl_keeps_only_a_sealed_reference_and_delete_my_data_removes_the_reply(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, reply_ttl=3600)
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    sent = [s for s in harness.platform.sent if isinstance(s.reply, SendPhotos)][0]
    refs = await harness.storage.replies_of(alice.pseudonym)
    assert [ref for _, ref in refs] == [sent.ref]
    rows = [r for r in await harness.storage.dump() if r[0] == "reply_refs"]
    assert len(rows) == 1
    assert sent.ref.chat.value.encode() not in rows[0][3], "the chat address must be sealed"
    assert not await harness.storage.due_replies(int(time.time()))
    assert await harness.storage.due_replies(int(time.time()) + 3601)
    await harness.command(alice, "/delete_my_data")
    assert harness.platform.last(DeleteMessage).target == sent.ref
    assert "styled photos and previews of mine deleted from the chat: 1" in harness.platform.last(SendText).text
    assert await harness.storage.replies_of(alice.pseudonym) == []


async def test_no_reply_reference_is_kept_without_reply_ttl(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert [r for r in await harness.storage.dump() if r[0] in ("reply_refs", "inflight")] == []
