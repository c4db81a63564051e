"""The photo journey: choice, queue, styling, reply, selfie deletion, release."""

from __future__ import annotations

import asyncio
import dataclasses
import io

import numpy as np
from PIL import Image

from handlers.replies import ChatAction, DeleteMessage, EditText, SendPhotos, SendText
from tests.conftest import jpeg_bytes


async def consented(harness, name="alice", language="en"):
    person = harness.person(name, language)
    await harness.agree(person)
    return person


async def test_photo_without_style_gets_picker_and_is_not_downloaded_yet(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    picker = harness.platform.last(SendText)
    assert picker.text.startswith("Pick a style")
    data = [b.data for row in picker.buttons for b in row]
    assert data[:3] == ["pick:impressionist", "pick:watercolour", "pick:ink"]
    assert "page:pick:1" in data  # "More…"
    assert all(len(row) <= 3 for row in picker.buttons)
    assert harness.platform.fetched == []


async def test_picked_style_is_applied_and_reply_differs_from_input(harness, small_portrait):
    alice = await consented(harness)
    event = await harness.photo(alice, small_portrait)
    await harness.press(alice, "pick:charcoal")
    await harness.idle()
    reply = harness.platform.last(SendPhotos)
    assert len(reply.photos) == 1
    out = np.asarray(Image.open(io.BytesIO(reply.photos[0].jpeg)).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(io.BytesIO(small_portrait)).convert("RGB"), dtype=np.int16)
    assert out.shape == original.shape and np.abs(out - original).mean() > 8
    assert "Charcoal" in reply.photos[0].caption
    deletes = harness.platform.replies(DeleteMessage)
    assert [d.target for d in deletes] == [event.message]
    assert any(isinstance(r, ChatAction) and r.action == "upload_photo" for r in harness.platform.replies())


async def test_one_status_message_is_edited_not_a_stream_of_messages(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    sent_after_photo = [r for r in harness.platform.replies() if isinstance(r, SendText)][1:]  # [0] was "thank you"
    assert [r.text for r in sent_after_photo] == ["Got it! Getting ready…"]
    edits = [r.text for r in harness.platform.replies(EditText)][1:]  # [0] marked the notice as agreed
    assert edits[0].startswith("Styling your photo (Ink wash)")
    assert edits[-1].startswith("Done ✓")


async def test_input_buffer_is_zeroed_right_after_the_reply(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="film")
    await harness.idle()
    [buffer] = harness.platform.buffers
    assert len(buffer) == 0 or not any(buffer), "the downloaded photo is still in memory"
    assert harness.ctx.memory.held_inputs == {}


async def test_input_ttl_keeps_photo_for_another_style_then_releases_it(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, input_ttl=60)
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="film")
    await harness.idle()
    reply = harness.platform.last(SendPhotos)
    assert "deleted in 60 s" in reply.photos[0].caption
    assert reply.buttons[0][0].data == "again:"
    [buffer] = harness.platform.buffers
    assert any(buffer), "with a TTL the input is held"
    await harness.press(alice, "again:")
    await harness.press(alice, "again:pencil")
    await harness.idle()
    assert len(harness.platform.fetched) == 1, "another style must not download again"
    assert "Pencil" in harness.platform.last(SendPhotos).photos[0].caption
    # expiry releases it
    held = harness.ctx.memory.held_inputs[alice.pseudonym]
    held.expires = 0
    assert harness.ctx.memory.sweep() == 1
    assert not any(buffer)


async def test_caption_names_style_strength_and_colour_keeping(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="oil 0.5 keep colours")
    await harness.idle()
    assert "Old-master oil" in harness.platform.last(SendPhotos).photos[0].caption
    weak = np.asarray(Image.open(io.BytesIO(harness.platform.last(SendPhotos).photos[0].jpeg)), dtype=np.int16)
    await harness.photo(alice, small_portrait, caption="oil")
    await harness.idle()
    strong = np.asarray(Image.open(io.BytesIO(harness.platform.last(SendPhotos).photos[0].jpeg)), dtype=np.int16)
    original = np.asarray(Image.open(io.BytesIO(small_portrait)), dtype=np.int16)
    assert np.abs(weak - original).mean() < np.abs(strong - original).mean()


async def test_favourite_style_skips_the_picker(harness, small_portrait):
    alice = await consented(harness)
    await harness.command(alice, "/style seaside")
    assert "favourite style is now Seaside" in harness.platform.last(SendText).text
    await harness.photo(alice, small_portrait)
    await harness.idle()
    assert "Seaside" in harness.platform.last(SendPhotos).photos[0].caption


async def test_album_of_five_styles_four_with_one_choice_as_one_album(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, [small_portrait] * 5)
    assert "first 4 photos" in harness.platform.texts()[-2]
    await harness.press(alice, "pick:ink")
    await harness.idle()
    reply = harness.platform.last(SendPhotos)
    assert len(reply.photos) == 4
    assert reply.photos[0].caption and not any(p.caption for p in reply.photos[1:])
    assert len(harness.platform.fetched) == 4


async def test_not_an_image_gets_a_clear_message(harness):
    alice = await consented(harness)
    await harness.photo(alice, b"%PDF-1.4 this is not a photo", caption="ink")
    await harness.idle()
    assert "only read JPEG, PNG, WebP, GIF, HEIC and AVIF" in harness.platform.last(EditText).text
    await harness.unsupported(alice, "document")
    assert "doesn't look like a photo" in harness.platform.last(SendText).text


async def test_corrupt_photo_gets_a_clear_message(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait[: len(small_portrait) // 3], caption="ink")
    await harness.idle()
    assert "seems damaged" in harness.platform.last(EditText).text


async def test_photo_larger_than_limit_is_refused_before_download(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, max_input_bytes=1024)
    alice = await consented(harness)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert harness.platform.fetched == []
    assert "too large" in harness.platform.last(SendText).text


async def test_a_failed_download_gets_a_kind_message(harness, small_portrait):
    alice = await consented(harness)
    event = await harness.photo(alice, small_portrait)
    del harness.platform.photos[event.photos[0].platform_ref]
    await harness.press(alice, "pick:ink")
    await harness.idle()
    assert "couldn't download" in harness.platform.last(EditText).text


async def test_queue_position_is_shown_and_people_take_turns(harness, small_portrait):
    harness.queue.workers  # two workers: the third person waits
    people = [await consented(harness, f"p{i}") for i in range(4)]
    for person in people:
        await harness.photo(person, small_portrait, caption="ink")
    await harness.idle()
    assert any("in line" in t for t in harness.platform.texts())
    assert len(harness.platform.replies(SendPhotos)) == 4


async def test_style_from_picture_uses_the_picture(harness, small_portrait, astronaut_rgb):
    alice = await consented(harness)
    painting = jpeg_bytes(astronaut_rgb)
    picture_event = await harness.photo(alice, painting, caption="/style_from")
    assert "Got your style picture" in harness.platform.last(SendText).text
    assert harness.platform.fetched == []
    await harness.photo(alice, small_portrait)
    await harness.idle()
    reply = harness.platform.last(SendPhotos)
    assert "your picture" in reply.photos[0].caption
    assert harness.platform.fetched == [picture_event.photos[0].platform_ref, harness.platform.fetched[1]]
    assert all(not any(b) for b in harness.platform.buffers), "style picture and photo must both be released"
    assert alice.pseudonym not in harness.ctx.memory.style_pictures


async def test_cancelled_job_releases_its_buffer(harness, small_portrait, monkeypatch):
    alice = await consented(harness)
    started = asyncio.Event()

    async def slow_load(data, detect_faces=True):
        started.set()
        await asyncio.sleep(10)

    monkeypatch.setattr(harness.ctx.engine, "load", slow_load)
    await harness.photo(alice, small_portrait, caption="ink")
    await asyncio.wait_for(started.wait(), 5)
    [buffer] = harness.platform.buffers
    assert any(buffer)
    assert harness.queue.cancel_owner(alice.pseudonym) == 1
    await harness.idle()
    assert not any(buffer), "a cancelled job must zero its input"
    assert harness.platform.replies(SendPhotos) == []
