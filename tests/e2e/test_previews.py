"""The preview sheet end to end: the real Darkroom and python-telegram-bot against the fake Bot
API, and the WeChat adapter against the fake WeChat API.

A photo sent in a private chat without a style gets one photo back, the person's face in every
style of the catalogue, numbered, with the picker under it; choosing deletes it and styles the
photo; /delete_my_data deletes it (also one still uploading) and counts it; groups never get one.
"""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
from PIL import Image

from handlers.texts import t
from inference import Picture, StyleRequest
from inference.provenance import read_labels
from inference.sheet import COLUMNS, FOOTER, LABEL, PAD, TILE, tile_picture
from tests.conftest import ALICE, GROUP, running_bot
from tests.e2e.test_wechat_flow import OPENID, consent_by_typing, wechat_bot
from tests.fakes.telegram_api import Call, FakeTelegram

SHEET_ON = {"DARKROOM_PREVIEW_SHEET": "1"}  # tests/conftest.py turns it off for the other flows
SHEET_CAPTION = "Your photo in every style"
BADGE_ROWS = 50  # the number's badge covers the top of each tile


# -- helpers ----------------------------------------------------------------------------------------


def is_sheet(call: Call) -> bool:
    return str(call.params.get("caption") or "").startswith(SHEET_CAPTION)


def buttons(call: Call) -> list[dict]:
    markup = call.params.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


async def wait_for_sheet(fake: FakeTelegram, chat_id: int, timeout: float = 30.0) -> Call:
    [sheet] = await fake.wait_for("sendPhoto", chat_id=chat_id, where=is_sheet, timeout=timeout)
    return sheet


async def until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll the async ``condition`` until it holds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def sheet_is_remembered(bot) -> bool:
    """The bot kept the landed sheet's reference (a reply row), so the choice can delete it."""
    return any(row[0] == "reply_refs" for row in await bot.storage.dump())


def deleted_ids(fake: FakeTelegram, chat_id: int) -> list[int]:
    return [int(c.params["message_id"]) for c in fake.calls_to("deleteMessage", chat_id)]


def served_photo(fake: FakeTelegram, data: bytes) -> tuple[str, list[str]]:
    """The path the fake serves ``data`` at, and every download of it so far."""
    [path] = [p for d, p in fake.files.values() if d == data]
    return path, [p for p in fake.file_downloads if p == path]


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def tile(sheet: np.ndarray, number: int) -> np.ndarray:
    """Tile ``number`` (0: the original) cut out of the sheet, below its number's badge."""
    row, column = divmod(number, COLUMNS)
    x, y = PAD + column * (TILE + PAD), PAD + row * (TILE + LABEL + PAD)
    return sheet[y + BADGE_ROWS : y + TILE, x : x + TILE]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def sheet_shape(styles: int) -> tuple[int, int]:
    rows = -(-(styles + 1) // COLUMNS)
    return rows * (TILE + LABEL + PAD) + FOOTER, COLUMNS * (TILE + PAD) + PAD


# -- Telegram -----------------------------------------------------------------------------------


async def test_a_photo_without_a_style_gets_one_sheet_of_its_face_in_every_style(
    fake_telegram, data_dir, engine, small_portrait
):
    fake = fake_telegram
    styles = engine.catalogue.styles
    async with running_bot(fake, data_dir, engine, **SHEET_ON) as bot:
        await fake.consent(ALICE)
        await fake.send_photo_from(ALICE, small_portrait)
        sheet = await wait_for_sheet(fake, ALICE.id)
        await until(lambda: sheet_is_remembered(bot), what="the sheet's reply row")
        await asyncio.sleep(0.3)  # nothing else follows: no second photo, no picker of names
    [only] = fake.calls_to("sendPhoto", ALICE.id)
    assert only is sheet
    assert not any("Pick a style" in str(c.params.get("text")) for c in fake.calls_to("sendMessage", ALICE.id))
    # The picker under it: every style, in the catalogue's order, numbered as the tiles are.
    assert [b["callback_data"] for b in buttons(sheet)] == [f"pick:{s.key}" for s in styles]
    assert [b["text"] for b in buttons(sheet)] == [f"{n} · {s.name}" for n, s in enumerate(styles, start=1)]
    assert sheet.params["caption"].startswith(SHEET_CAPTION)
    jpeg = sheet.files["photo"]
    assert read_labels(jpeg).aigc is not None, "the sheet carries no AI label"

    # The tiles really are the person's photo in each style: what the engine makes of the
    # square around the face of the very bytes the fake served.
    path, downloads = served_photo(fake, small_portrait)
    assert downloads == [path]  # the sheet fetched the full photo once (not the thumbnail)
    [served] = [data for data, p in fake.files.values() if p == path]
    picture = engine.load(served)
    small, faces = tile_picture(picture.rgb, picture.faces)
    thumb = Picture(small, faces)
    out = decode(jpeg)
    assert out.shape[:2] == sheet_shape(len(styles))
    assert psnr(tile(out, 0), small[BADGE_ROWS:]) > 30, "tile 0 is not the original"
    tiles = []
    for number, style in enumerate(styles, start=1):
        expected = engine.render_rgb(thumb, StyleRequest(style.key))[BADGE_ROWS:]
        got = tile(out, number)
        assert psnr(got, expected) > 28, f"tile {number} is not {style.key}: {psnr(got, expected):.1f} dB"
        tiles.append(got)
    for a in range(len(tiles)):
        for b in range(a + 1, len(tiles)):
            assert psnr(tiles[a], tiles[b]) < 28, f"tiles {a + 1} and {b + 1} look the same"


async def test_pressing_a_style_on_the_sheet_deletes_it_and_styles_the_photo(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    chosen = engine.catalogue.styles[5]
    async with running_bot(fake, data_dir, engine, **SHEET_ON) as bot:
        selfie = await fake.send_photo_from(ALICE, small_portrait)  # before consent
        await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        assert fake.file_downloads == [] and "getFile" not in fake.methods(), "downloaded before consent"
        agreed = time.monotonic()
        await fake.press(ALICE, "consent:agree")
        sheet = await wait_for_sheet(fake, ALICE.id)
        landed = sheet.result["message_id"]
        await until(lambda: sheet_is_remembered(bot), what="the sheet's reply row")

        await fake.press(ALICE, f"pick:{chosen.key}", message=sheet.result)
        await fake.wait_for(
            "deleteMessage", chat_id=ALICE.id, timeout=10, where=lambda c: int(c.params["message_id"]) == landed
        )
        [_, styled] = await fake.wait_for("sendPhoto", count=2, chat_id=ALICE.id)
        await fake.wait_for(
            "deleteMessage", chat_id=ALICE.id, where=lambda c: int(c.params["message_id"]) == selfie["message_id"]
        )
        await until(lambda: _no_reply_rows(bot), what="the sheet's reply row to go")
    assert not is_sheet(styled)
    assert chosen.name in styled.params["caption"] and "deleted" in styled.params["caption"]
    assert not any(b["callback_data"].startswith("pick:") for b in buttons(styled))
    assert decode(styled.files["photo"]).shape[:2] == (300, 256)  # the whole photo, not a tile
    # The sheet went before the styled photo came, exactly once; the selfie went after it.
    deletions = fake.calls_to("deleteMessage", ALICE.id)
    assert [int(c.params["message_id"]) for c in deletions].count(landed) == 1
    assert fake.calls.index(next(c for c in deletions if int(c.params["message_id"]) == landed)) < fake.calls.index(styled)
    assert sorted(deleted_ids(fake, ALICE.id)) == sorted([landed, selfie["message_id"]])
    # A photo is not edited into text (the picker's "Style: X" is for the picker alone).
    assert not [c for c in fake.calls_to("editMessageText", ALICE.id) if int(c.params["message_id"]) == landed]
    # Downloaded for the sheet and for the styling, at most; nothing before consent.
    path, downloads = served_photo(fake, small_portrait)
    assert 1 <= len(downloads) <= 2 and fake.file_downloads == downloads
    assert all(c.at > agreed for c in fake.calls_to("getFile"))


async def _no_reply_rows(bot) -> bool:
    return not await sheet_is_remembered(bot)


async def test_delete_my_data_deletes_the_sheet_and_counts_it(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, **SHEET_ON) as bot:
        await fake.consent(ALICE)
        selfie = await fake.send_photo_from(ALICE, small_portrait)
        sheet = await wait_for_sheet(fake, ALICE.id)
        landed = sheet.result["message_id"]
        await until(lambda: sheet_is_remembered(bot), what="the sheet's reply row")
        await fake.send_text_from(ALICE, "/delete_my_data")
        receipt = await fake.wait_for_text("Receipt", chat_id=ALICE.id)
        await fake.wait_for(
            "deleteMessage", chat_id=ALICE.id, timeout=10, where=lambda c: int(c.params["message_id"]) == landed
        )
        assert await bot.storage.dump() == []
        assert bot.router.memory.awaiting_style == {}
        # The choice is no longer there: pressing a style on the (deleted) sheet styles nothing.
        await fake.press(ALICE, f"pick:{engine.catalogue.styles[0].key}", message=sheet.result)
        await fake.wait_for("answerCallbackQuery", count=2)
    text = receipt.params["text"]
    assert "styled photos and previews of mine deleted from the chat: 1" in text
    assert "your photo messages deleted from our chat: 1" in text
    assert deleted_ids(fake, ALICE.id).count(landed) == 1
    assert selfie["message_id"] in deleted_ids(fake, ALICE.id)
    assert len(fake.calls_to("sendPhoto", ALICE.id)) == 1, "a photo was styled after the erasure"
    path, downloads = served_photo(fake, small_portrait)
    assert len(downloads) == 1


async def test_erasure_while_the_sheet_uploads_deletes_it_when_it_lands(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, **SHEET_ON) as bot:
        await fake.consent(ALICE)
        fake.delays["sendPhoto"] = 2.0  # the sheet is slow to upload
        await fake.send_photo_from(ALICE, small_portrait)
        await fake.wait_for_arrival("sendPhoto")  # the sheet is on its way
        await fake.send_text_from(ALICE, "/delete_my_data")
        receipt = await fake.wait_for_text("Receipt", chat_id=ALICE.id)
        sheet = await wait_for_sheet(fake, ALICE.id)
        landed = sheet.result["message_id"]
        await fake.wait_for(
            "deleteMessage", chat_id=ALICE.id, timeout=10, where=lambda c: int(c.params["message_id"]) == landed
        )
        follow_up = await fake.wait_for_text("already on its way", chat_id=ALICE.id, timeout=10)
        await asyncio.sleep(0.5)  # nothing more comes: no picker, no styling, no row
        assert await bot.storage.dump() == []
        assert bot.router.memory.awaiting_style == {}
    order = fake.calls.index  # calls are listed as they complete
    assert order(receipt) < order(sheet), "the sheet was meant to land after the receipt"
    assert order(follow_up) > order(sheet)
    assert "queued or running jobs cancelled: 1" in receipt.params["text"]
    assert deleted_ids(fake, ALICE.id).count(landed) == 1
    assert len(fake.calls_to("sendPhoto", ALICE.id)) == 1
    later = fake.calls[order(follow_up) + 1 :]
    assert not [c for c in later if c.method in ("sendPhoto", "sendMessage") and int(c.params.get("chat_id", 0)) == ALICE.id]
    assert not any("Pick a style" in str(c.params.get("text")) for c in fake.calls_to("sendMessage", ALICE.id))


async def test_erasure_just_after_the_sheet_landed_still_deletes_it(fake_telegram, data_dir, engine, small_portrait):
    """The sheet has landed but the bot is still writing down where (a slow database): an
    erasure then must still take it back, as it does one still uploading."""
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, **SHEET_ON) as bot:
        await fake.consent(ALICE)
        remember = bot.storage.remember_reply

        async def slow_remember(*args, **kwargs):
            await asyncio.sleep(1.0)  # a busy database
            return await remember(*args, **kwargs)

        bot.storage.remember_reply = slow_remember
        await fake.send_photo_from(ALICE, small_portrait)
        sheet = await wait_for_sheet(fake, ALICE.id)  # landed; its reference is being written
        landed = sheet.result["message_id"]
        await fake.send_text_from(ALICE, "/delete_my_data")
        await fake.wait_for_text("Receipt", chat_id=ALICE.id)
        try:
            await fake.wait_for(
                "deleteMessage", chat_id=ALICE.id, timeout=3, where=lambda c: int(c.params["message_id"]) == landed
            )
        finally:
            await asyncio.sleep(1.5)  # the slow write is over, whatever it did
            assert await bot.storage.dump() == []


async def test_a_group_photo_gets_no_sheet_unasked(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, **SHEET_ON):
        await fake.consent(ALICE)
        await fake.push({"message": fake.photo_message(ALICE, GROUP, small_portrait)})  # no /style: ignored
        photo = fake.photo_message(ALICE, GROUP, small_portrait, caption="/style")  # no style named either
        await fake.push({"message": photo})
        ask = await fake.wait_for_text("Only the sender of the photo can answer", chat_id=GROUP)
        yes = ask.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        await fake.press(ALICE, yes, message=ask.result, chat_id=GROUP)
        [reply] = await fake.wait_for("sendPhoto", chat_id=GROUP)
        await asyncio.sleep(0.3)
    sent = fake.calls_to("sendPhoto")
    assert sent == [reply], "a group photo got a sheet (or more than its styled reply)"
    assert not is_sheet(reply) and not any(b["callback_data"].startswith("pick:") for b in buttons(reply))
    assert engine.catalogue.default.name in reply.params["caption"]
    assert reply.params["reply_parameters"]["message_id"] == photo["message_id"]
    assert decode(reply.files["photo"]).shape[:2] == (300, 256)
    assert len(fake.file_downloads) == 1  # styled once, no sheet fetched first
    assert fake.calls_to("deleteMessage") == []


# -- WeChat -------------------------------------------------------------------------------------


async def test_wechat_gets_the_sheet_as_an_image_then_typed_choices(fake_telegram, wechat_api, data_dir, engine, small_portrait, captured_logs):
    api = wechat_api
    styles = engine.catalogue.styles
    chosen = styles[2]
    async with wechat_bot(fake_telegram, api, data_dir, engine, **SHEET_ON) as (bot, sender):
        await consent_by_typing(api, sender)
        api.media["MEDIA_P"] = small_portrait
        assert await sender.post(sender.image_xml(OPENID, "MEDIA_P"), OPENID) == (200, "success")
        listing = await api.wait_for_text(f"[1] {styles[0].display_name('zh')}", OPENID)
        sent = api.sent(OPENID)
        images = [m for m in sent if m["msgtype"] == "image"]
        assert len(images) == 1
        # The sheet first, the typed choices right after it (one message, the sheet's caption).
        position = sent.index(images[0])
        assert sent[position + 1]["msgtype"] == "text" and sent[position + 1]["text"]["content"] == listing

        await sender.post(sender.text_xml(OPENID, "3"), OPENID)
        await api.wait_for(lambda: sum(m["msgtype"] == "image" for m in api.sent(OPENID)) == 2)
        result_caption = await api.wait_for_text(t("photo.caption", "zh", style=chosen.display_name("zh")), OPENID)
        assert await bot.storage.dump(replay_guard=False) != []  # still consented
    assert listing.startswith(t("styles.sheet_typed", "zh"))  # nothing to tap on WeChat: type
    for number, style in enumerate(styles, start=1):
        assert f"[{number}] {style.display_name('zh')}" in listing
    sheet_jpeg = api.uploads[images[0]["image"]["media_id"]]
    assert read_labels(sheet_jpeg).aigc is not None
    assert decode(sheet_jpeg).shape[:2] == sheet_shape(len(styles))
    [_, styled] = [m for m in api.sent(OPENID) if m["msgtype"] == "image"]
    out = decode(api.uploads[styled["image"]["media_id"]])
    assert out.shape[:2] == (300, 256)
    assert result_caption.startswith(chosen.display_name("zh"))
    assert [c.path for c in api.calls].count("/cgi-bin/media/get") <= 2
    assert all(c.params["type"] == "image" for c in api.calls if c.path.endswith("media/upload"))
    stream, records = captured_logs
    assert not [r for r in records if r.levelno >= 40], [r.getMessage() for r in records if r.levelno >= 40]
    assert "Traceback" not in stream.getvalue()
