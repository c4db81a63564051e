"""The five privacy proofs, each through the real adapters against local fakes.

1. No bytes at rest (Telegram: tests/e2e/test_privacy_telegram.py; WeChat and after a crash: here).
2. No identifiers in logs or database, with DEBUG logging.
3. Consent before processing, for every path.
4. No unexpected network.
5. Deletion is complete.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from bot.safeguards.pseudonym import Pseudonymizer
from tests.conftest import ALICE, BOB, GROUP, TOKEN, running_bot
from tests.e2e.test_wechat_flow import OPENID, consent_by_typing, wechat_bot
from tests.fakes.wechat_api import AES_KEY, APPSECRET
from tests.privacy_scan import make_canary, now, rest_roots, scan_files, scan_text

# -- proofs 1 and 2 on WeChat ---------------------------------------------------------------------


async def test_wechat_canary_leaves_no_trace_and_no_identifier_is_logged_or_stored(
    fake_telegram, wechat_api, data_dir, engine, grace_rgb, captured_logs
):
    api = wechat_api
    canary = make_canary(grace_rgb)
    started = now()
    async with wechat_bot(fake_telegram, api, data_dir, engine, safe_mode=True) as (bot, sender):
        await consent_by_typing(api, sender)
        api.media["CANARY_MEDIA_ID_77"] = canary.jpeg
        await sender.post(sender.text_xml(OPENID, "风格 胶片"), OPENID)
        await api.wait_for_text("胶片", OPENID)
        await sender.post(sender.image_xml(OPENID, "CANARY_MEDIA_ID_77"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)))
        rows_during = await bot.storage.dump()
        await sender.post(sender.text_xml(OPENID, "删除我的数据"), OPENID)
        await api.wait_for_text("回执", OPENID)
        rows_after = await bot.storage.dump()
    tokens = sorted(api.valid_tokens)
    identifiers = [OPENID, APPSECRET, AES_KEY, "CANARY_MEDIA_ID_77", *tokens]
    assert scan_files(rest_roots(data_dir), canary.needles, since=started) == []
    stream, records = captured_logs
    logged = [stream.getvalue()] + [r.getMessage() for r in records]
    assert scan_text(logged, identifiers + [canary.marker.decode()]) == []
    flat = " ".join(str(v) for row in rows_during for v in row)
    assert any(row[0] == "consents" for row in rows_during)
    assert scan_text([flat], identifiers) == []
    # Only the replay guard outlives erasure (keyed hashes that expire; no identifier in them).
    assert {row[0] for row in rows_after} <= {"callbacks_seen"}
    assert scan_text([" ".join(str(v) for row in rows_after for v in row)], identifiers) == []
    [image] = [m for m in api.sent(OPENID) if m["msgtype"] == "image"]
    out = api.uploads[image["image"]["media_id"]]
    assert canary.marker not in out and "exif" not in Image.open(io.BytesIO(out)).info


async def test_the_preview_sheet_leaves_no_trace_and_no_identifier_is_logged_or_stored(
    fake_telegram, data_dir, engine, grace_rgb, captured_logs
):
    """Proofs 1 and 2 with the preview sheet in the flow: a photo without a style, its sheet,
    a style chosen on it, then erasure. Nothing of the photo at rest, no identifier in the DEBUG
    log or in a row (the sheet's reference row is sealed), and no row after the erasure."""
    fake = fake_telegram
    canary = make_canary(grace_rgb)
    started = now()
    async with running_bot(fake, data_dir, engine, DARKROOM_PREVIEW_SHEET="1", DARKROOM_LOG_LEVEL="DEBUG") as bot:
        await fake.consent(ALICE)
        await fake.send_photo_from(ALICE, canary.jpeg, caption="a caption only Alice wrote")
        await fake.wait_for("sendPhoto", chat_id=ALICE.id, timeout=120)  # the sheet
        rows_during = await bot.storage.dump()
        assert any(row[0] == "reply_refs" for row in rows_during)  # the sheet's reference, kept for its deletion
        await fake.press(ALICE, "pick:film")
        await fake.wait_for("sendPhoto", count=2, chat_id=ALICE.id, timeout=120)
        await fake.wait_for_edit("Done", chat_id=ALICE.id)
        await fake.send_text_from(ALICE, "/delete_my_data")
        await fake.wait_for_text("Receipt", chat_id=ALICE.id)
        rows_after = await bot.storage.dump()
    file_ids = [fid for fid, (data, _) in fake.files.items() if data == canary.jpeg]
    assert file_ids
    identifiers = [str(ALICE.id), ALICE.username, ALICE.first_name, "only Alice wrote", TOKEN, *file_ids]
    assert scan_files(rest_roots(data_dir), canary.needles, since=started) == []
    stream, records = captured_logs
    logged = [stream.getvalue()] + [r.getMessage() for r in records]
    assert "sent a preview sheet" in stream.getvalue()  # the log that was scanned covers the sheet
    assert scan_text(logged, identifiers + [canary.marker.decode()]) == []
    assert scan_text([" ".join(str(v) for row in rows_during for v in row)], identifiers) == []
    assert rows_after == []


# -- proof 3: consent before processing, for every path ----------------------------------------------


@pytest.mark.parametrize("path", ["private", "album", "group", "style_from", "style_from_caption"])
async def test_no_download_before_consent_on_any_telegram_path(path, fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        if path == "private":
            await fake.send_photo_from(ALICE, small_portrait, caption="ink")
            notice = await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        elif path == "album":
            for _ in range(2):
                await fake.push({"message": fake.photo_message(ALICE, ALICE.id, small_portrait, caption="ink", media_group_id="g")})
            notice = await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        elif path == "group":
            photo = fake.photo_message(ALICE, GROUP, small_portrait)
            await fake.push({"message": photo})
            await fake.send_text_from(BOB, "/style ink", chat_id=GROUP, reply_to=photo)
            notice = await fake.wait_for_text("Do you agree?", chat_id=GROUP)
        else:
            painting = fake.photo_message(ALICE, ALICE.id, small_portrait, caption="/style_from" if path == "style_from_caption" else None)
            await fake.push({"message": painting})
            if path == "style_from":
                await fake.send_text_from(ALICE, "/style_from", reply_to=painting)
            notice = await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        await asyncio.sleep(0.3)  # let anything that would wrongly download do so
        assert "getFile" not in fake.methods() and fake.file_downloads == [], f"{path}: downloaded before consent"

        # The same path does download once consent is given (the check above is not vacuous).
        await fake.press(ALICE, "consent:agree", message=notice.result, chat_id=notice.result["chat"]["id"])
        if path == "group":
            ask = await fake.wait_for_text("Only the sender", chat_id=GROUP)
            await fake.press(ALICE, ask.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"], message=ask.result, chat_id=GROUP)
        if path.startswith("style_from"):
            await fake.wait_for_text("Thank you", chat_id=ALICE.id)
            await fake.send_photo_from(ALICE, small_portrait)
        await fake.wait_for("getFile")
        consent_press = next(c for c in fake.calls if c.method == "answerCallbackQuery")
        assert all(c.at >= consent_press.at for c in fake.calls_to("getFile"))


async def test_no_download_before_consent_on_wechat(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    api = wechat_api
    async with wechat_bot(fake_telegram, api, data_dir, engine) as (bot, sender):
        api.media["M1"] = small_portrait
        await sender.post(sender.image_xml(OPENID, "M1"), OPENID)
        await api.wait_for_text("你同意吗", OPENID)
        await asyncio.sleep(0.3)
        assert "/cgi-bin/media/get" not in api.paths()
        await sender.post(sender.text_xml(OPENID, "不同意"), OPENID)
        await api.wait_for_text("什么都没有保存", OPENID)
        await asyncio.sleep(0.3)
        assert "/cgi-bin/media/get" not in api.paths(), "declining must never download"


# -- proof 4: no unexpected network -------------------------------------------------------------------


async def test_only_the_configured_platform_apis_are_contacted(
    fake_telegram, wechat_api, data_dir, engine, small_portrait, network_guard
):
    api_ports = {fake_telegram.port, int(wechat_api.url.rsplit(":", 1)[1])}
    async with wechat_bot(fake_telegram, wechat_api, data_dir, engine) as (bot, sender):
        own_port = bot.http.port
        network_guard.connections.clear()
        await fake_telegram.consent(ALICE)
        await fake_telegram.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake_telegram.wait_for("sendPhoto", chat_id=ALICE.id)
        await consent_by_typing(wechat_api, sender)
        wechat_api.media["M2"] = small_portrait
        await sender.post(sender.text_xml(OPENID, "风格 水墨"), OPENID)
        await sender.post(sender.image_xml(OPENID, "M2"), OPENID)
        await wechat_api.wait_for(lambda: any(m["msgtype"] == "image" for m in wechat_api.sent(OPENID)))
    # Connections opened in this process: the bot's (to the two APIs) and the test's own
    # (the fake WeChat server posting callbacks to our HTTP port). Nothing else.
    assert network_guard.ports() <= api_ports | {own_port}, network_guard.connections
    assert api_ports <= network_guard.ports(), "the flow did not reach both APIs"
    assert network_guard.refused == []


# -- proof 5: deletion is complete ---------------------------------------------------------------------


async def test_delete_my_data_removes_everything_and_the_receipt_counts_it(fake_telegram, data_dir, engine, small_portrait, two_faces):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, DARKROOM_INPUT_TTL="300", DARKROOM_REPLY_TTL="3600") as bot:
        memory = bot.router.memory
        alice = Pseudonymizer(bot.settings.secret)("telegram", "user", ALICE.id)
        await fake.consent(ALICE)
        await fake.send_text_from(ALICE, "/style oil 0.8")
        await fake.wait_for_text("favourite style", chat_id=ALICE.id)
        # A styled reply (its reference kept for DARKROOM_REPLY_TTL) and its input (kept for
        # DARKROOM_INPUT_TTL).
        await fake.send_photo_from(ALICE, small_portrait)
        await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        await fake.wait_for_edit("Done", chat_id=ALICE.id)
        for _ in range(50):
            if alice in memory.held_inputs:
                break
            await asyncio.sleep(0.05)
        held_bytes = [b.data for b in memory.held_inputs[alice].buffers]
        assert alice in memory.held_results  # the styled result, kept for "Full quality (file)"
        # A photo with two faces waiting for "everyone agreed".
        await fake.send_photo_from(ALICE, two_faces, caption="ink")
        await fake.wait_for_text("I can see 2 faces", chat_id=ALICE.id)
        waiting_bytes = [b.data for b in memory.awaiting_confirmation[alice].buffers]
        assert all(any(b) for b in held_bytes + waiting_bytes)
        # Jobs running and waiting: downloads are slow now, so they stay in the queue.
        fake.delays["file"] = 3.0
        for _ in range(3):
            await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        for _ in range(50):
            if bot.queue.pending(alice) == 3:
                break
            await asyncio.sleep(0.05)
        assert bot.queue.pending(alice) == 3
        assert await bot.storage.rows_of(alice) >= 4

        await fake.send_text_from(ALICE, "/delete_my_data")
        receipt = (await fake.wait_for_text("Receipt", chat_id=ALICE.id)).params["text"]
        assert await bot.storage.rows_of(alice) == 0
        assert bot.queue.pending(alice) == 0
        assert memory.held_count(alice) == 0
        await asyncio.sleep(0.5)
        late_photos = len(fake.calls_to("sendPhoto", ALICE.id))
    assert "consent records: 2" in receipt
    assert "preferences: 1" in receipt
    assert "queued or running jobs cancelled: 3" in receipt
    assert "photos held in memory released: 3" in receipt  # the input, the waiting photo, the result
    assert "styled photos and previews of mine deleted from the chat: 1" in receipt
    assert all(not any(b) for b in held_bytes + waiting_bytes), "held photos must be zeroed"
    assert late_photos == 1, "a cancelled job still replied"
    first_reply = fake.calls_to("sendPhoto", ALICE.id)[0].result["message_id"]
    assert any(int(d.params["message_id"]) == first_reply for d in fake.calls_to("deleteMessage", ALICE.id))
    assert TOKEN not in receipt
