"""The preview sheet: the person's own photo in every style, with the picker under it.

It is derived from the face, so it follows a result's rules: made only after consent and through
the queue, AI-labelled, its input released, and its message deleted once a style is chosen,
when a newer photo replaces it, when the choice is no longer awaited, and by /delete_my_data
(whose receipt counts it)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time

import numpy as np
import pytest
from PIL import Image

from handlers import photos
from handlers.memory import HeldPhotos
from handlers.pipeline import Outcome, OutcomeKind
from handlers.replies import DeleteMessage, EditText, SendPhotos, SendText
from inference import StyleRequest
from inference.provenance import read_labels
from inference.sheet import COLUMNS, LABEL, PAD, TILE, tile_picture


@pytest.fixture
def conversation_settings(conversation_settings):
    return dataclasses.replace(conversation_settings, preview_sheet=True)


async def consented(harness, name="alice", language="en"):
    person = harness.person(name, language)
    await harness.agree(person)
    return person


def sheets(harness) -> list[tuple]:
    """(reply, where it landed) of every preview sheet sent."""
    return [(s.reply, s.ref) for s in harness.platform.sent if isinstance(s.reply, SendPhotos) and s.reply.buttons
            and s.reply.buttons[0][0].data.startswith("pick:")]


def tile(sheet_jpeg: bytes, number: int) -> np.ndarray:
    """Tile ``number`` (0: the original) cut out of the sheet."""
    rgb = np.asarray(Image.open(io.BytesIO(sheet_jpeg)).convert("RGB"))
    row, column = divmod(number, COLUMNS)
    x, y = PAD + column * (TILE + PAD), PAD + row * (TILE + LABEL + PAD)
    return rgb[y + 50 : y + TILE, x : x + TILE]  # below the number's badge


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


async def test_a_photo_without_a_style_gets_the_sheet_with_every_style_numbered(harness, engine, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [(sheet, _)] = sheets(harness)
    assert sheet.photos[0].caption.startswith("Your photo in every style")
    labels = [b.label for row in sheet.buttons for b in row]
    data = [b.data for row in sheet.buttons for b in row]
    styles = engine.catalogue.styles
    assert data == [f"pick:{s.key}" for s in styles]  # every style at once, no "More…"
    assert labels == [f"{i} · {s.name}" for i, s in enumerate(styles, start=1)]
    assert read_labels(sheet.photos[0].jpeg).aigc is not None  # labelled like any result
    # Only the first photo was fetched, and its buffer is zeroed now.
    assert len(harness.platform.fetched) == 1
    assert all(not any(b) for b in harness.platform.buffers)
    assert not [t for t in harness.platform.texts() if t.startswith("Pick a style")]


async def test_the_tiles_are_the_persons_photo_in_each_style(harness, engine, small_portrait):
    """Each tile is the engine's own result at that size (PSNR), and they differ from each other."""
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [(sheet, _)] = sheets(harness)
    jpeg = sheet.photos[0].jpeg
    picture = engine.load(small_portrait)
    small, faces = tile_picture(picture.rgb, picture.faces)
    thumb = type(picture)(small, faces)
    assert psnr(tile(jpeg, 0), small[50:]) > 30  # the original
    tiles = []
    for number, style in enumerate(engine.catalogue.styles, start=1):
        expected = engine.render_rgb(thumb, StyleRequest(style.key))[50:]
        got = tile(jpeg, number)
        assert psnr(got, expected) > 28, f"tile {number} ({style.key}) is not that style: {psnr(got, expected):.1f} dB"
        tiles.append(got)
    for a in range(len(tiles)):
        for b in range(a + 1, len(tiles)):
            assert psnr(tiles[a], tiles[b]) < 28, f"tiles {a + 1} and {b + 1} look the same"


async def test_choosing_deletes_the_sheet_and_styles_the_photo(harness, small_portrait):
    alice = await consented(harness)
    event = await harness.photo(alice, small_portrait)
    await harness.idle()
    [(sheet, landed)] = sheets(harness)
    assert [m for _, m in await harness.storage.replies_of(alice.pseudonym)] == [landed]
    await harness.press(alice, "pick:ink")
    await harness.idle()
    deleted = [d.target for d in harness.platform.replies(DeleteMessage)]
    assert landed in deleted and event.message in deleted
    assert await harness.storage.replies_of(alice.pseudonym) == []  # its row went with it
    result = harness.platform.last(SendPhotos)
    assert result is not sheet and "Ink wash" in result.photos[0].caption
    assert not [e for e in harness.platform.replies(EditText) if e.target == landed]  # a photo is not edited into text


async def test_a_typed_number_chooses_too(harness, engine, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [(_, landed)] = sheets(harness)
    await harness.text(alice, "3")
    await harness.idle()
    assert landed in [d.target for d in harness.platform.replies(DeleteMessage)]
    assert engine.catalogue.styles[2].name in harness.platform.last(SendPhotos).photos[0].caption


async def test_delete_my_data_deletes_the_sheet_and_counts_it(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [(_, landed)] = sheets(harness)
    await harness.command(alice, "/delete_my_data")
    await harness.idle()
    assert landed in [d.target for d in harness.platform.replies(DeleteMessage)]
    receipt = [t for t in harness.platform.texts() if t.startswith("Deleted. Receipt")][-1]
    assert "styled photos and previews of mine deleted from the chat: 1" in receipt
    assert await harness.storage.replies_of(alice.pseudonym) == []
    assert harness.ctx.memory.awaiting_style == {}


async def test_a_sheet_still_uploading_when_the_person_erases_is_taken_back(harness, small_portrait):
    harness.platform.delays[SendPhotos] = 0.5
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    started = harness.platform.started.setdefault(SendPhotos, asyncio.Event())
    await asyncio.wait_for(started.wait(), 30)
    await harness.command(alice, "/delete_my_data")
    await harness.idle()
    await asyncio.sleep(0.8)
    [(_, landed)] = sheets(harness)
    assert landed in [d.target for d in harness.platform.replies(DeleteMessage)]
    assert await harness.storage.replies_of(alice.pseudonym) == []


async def test_a_newer_photo_replaces_the_sheet(harness, small_portrait, grace_rgb):
    from tests.conftest import jpeg_bytes

    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [(_, first)] = sheets(harness)
    await harness.photo(alice, jpeg_bytes(grace_rgb[::2, ::2]))
    await harness.idle()
    assert first in [d.target for d in harness.platform.replies(DeleteMessage)]
    assert len(sheets(harness)) == 2


async def test_a_style_typed_before_the_sheet_arrives_deletes_it_on_arrival(harness, small_portrait):
    """The sheet comes after the choice: it is not left behind."""
    alice = await consented(harness)
    chat = harness.private(alice)
    held = HeldPhotos(alice, chat, (harness.photo_ref(small_portrait),), harness.message(chat))
    harness.ctx.memory.hold(harness.ctx.memory.awaiting_style, held)
    job = photos.ChatJob(alice, chat, held.photos, StyleRequest(photos.PREVIEW), None)
    harness.ctx.memory.take(harness.ctx.memory.awaiting_style, alice.pseudonym)  # chosen meanwhile
    landed = await harness.ctx.send(chat, SendPhotos(()))
    await photos._previews_ended(harness.ctx, held, job, Outcome(OutcomeKind.DONE, sent=landed))
    assert landed in [d.target for d in harness.platform.replies(DeleteMessage)]
    assert await harness.storage.replies_of(alice.pseudonym) == []


async def test_several_faces_get_the_names_alone(harness, two_faces):
    """The sheet would show everyone pictured, styled: it waits for their agreement, which the
    styling asks for once a style is chosen."""
    alice = await consented(harness)
    await harness.photo(alice, two_faces)
    await harness.idle()
    assert sheets(harness) == []
    assert harness.platform.last(SendText).text.startswith("Pick a style")


async def test_a_broken_photo_is_reported_at_once_not_after_the_choice(harness):
    alice = await consented(harness)
    await harness.photo(alice, b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    await harness.idle()
    assert sheets(harness) == []
    assert not [t for t in harness.platform.texts() if t.startswith("Pick a style")]
    assert harness.ctx.memory.awaiting_style == {}
    assert "seems damaged" in harness.platform.last(SendText).text


async def test_the_sheet_counts_as_the_photo_and_the_choice_does_not_count_it_again(harness, small_portrait):
    harness.queue.rate_per_hour = 1
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    assert len(sheets(harness)) == 1
    await harness.press(alice, "pick:film")
    await harness.idle()
    assert "Film" in harness.platform.last(SendPhotos).photos[0].caption  # not refused by the limit
    await harness.photo(alice, small_portrait)  # the hour's one photo is used: the names alone
    await harness.idle()
    assert len(sheets(harness)) == 1
    assert harness.platform.last(SendText).text.startswith("Pick a style")


async def test_the_sheets_reference_is_kept_only_until_the_choice_is_due(harness, small_portrait):
    alice = await consented(harness)
    before = int(time.time())
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [(_, landed)] = sheets(harness)
    due = await harness.storage.due_replies(before + harness.ctx.settings.pending_ttl + 5)
    assert [m for _, m in due] == [landed]  # the janitor deletes it when the choice expires


async def test_without_consent_nothing_is_fetched_and_no_sheet_is_made(harness, small_portrait):
    bob = harness.person("bob")
    await harness.photo(bob, small_portrait)
    await harness.idle()
    assert harness.platform.fetched == [] and sheets(harness) == []


async def test_the_setting_turns_it_off(harness, small_portrait):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, preview_sheet=False)
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    assert sheets(harness) == [] and harness.platform.fetched == []


# -- groups: never unasked; "/style preview" asks for it ------------------------------------------


async def test_a_group_photo_never_gets_a_sheet_unasked(harness, small_portrait):
    alice, group = await consented(harness), harness.group()
    await harness.photo(alice, small_portrait, chat=group, caption="/style")
    ask = harness.platform.last(SendText)
    await harness.press(alice, ask.buttons[0][0].data, chat=group)
    await harness.idle()
    assert sheets(harness) == []
    assert harness.platform.last(SendPhotos).photos[0].caption  # styled with the default style


async def test_style_preview_in_a_group_sends_the_sheet_and_only_the_author_chooses(harness, small_portrait):
    alice, bob, group = await consented(harness), harness.person("bob"), harness.group()
    photo = await harness.photo(alice, small_portrait, chat=group, caption="/style preview")
    ask = harness.platform.last(SendText)
    await harness.press(alice, ask.buttons[0][0].data, chat=group)  # the author: everyone agreed
    await harness.idle()
    [(sheet, landed)] = sheets(harness)
    assert sheet.reply_to == photo.message  # it answers the photo, in the group
    assert sheet.photos[0].caption.startswith("The photo in every style")
    await harness.press(bob, "pick:ink", chat=group)  # not bob's photo
    await harness.idle()
    assert landed not in [d.target for d in harness.platform.replies(DeleteMessage)]
    assert not [e for e in harness.platform.replies(EditText) if e.target.message_id == landed.message_id]
    await harness.press(alice, "pick:ink", chat=group)
    await harness.idle()
    assert [d.target for d in harness.platform.replies(DeleteMessage)] == [landed]  # the sheet only, never the photo
    result = harness.platform.last(SendPhotos)
    assert "Ink wash" in result.photos[0].caption and result.reply_to == photo.message


async def test_without_buttons_the_sheet_says_to_type(harness, small_portrait):
    harness.ctx.platform.has_buttons = False  # WeChat (the router's view of the platform)
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.idle()
    [sheet] = [r for r in harness.platform.replies(SendPhotos)]
    assert sheet.photos[0].caption.startswith("Your photo in every style") and "Type a style's number" in sheet.photos[0].caption
    assert [b.label for row in sheet.buttons for b in row][0] == "Impressionist"  # shown as "[1] Impressionist"
