"""Polling and webhook mode through the real python-telegram-bot, start-up resilience, retries."""

from __future__ import annotations

import socket

import aiohttp

from handlers.commands import COMMANDS
from handlers.texts import TEXTS
from tests.conftest import ALICE, TOKEN, running_bot
from tests.fakes.telegram_api import Failure


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_webhook_mode_registers_secret_and_serves_updates(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    async with running_bot(
        fake, data_dir, engine, TELEGRAM_MODE="webhook", TELEGRAM_WEBHOOK_URL=url, DARKROOM_HTTP_PORT=str(port)
    ) as bot:
        [registered] = fake.calls_to("setWebhook")
        assert registered.params["url"] == url
        secret = registered.params["secret_token"]
        assert len(secret) >= 32
        assert "getUpdates" not in fake.methods()

        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                health = await response.json()
                assert response.status == 200 and health["status"] == "ok"
                # which backend styles, chosen at start-up
                assert health["engine"]["backend"] == engine.choice.backend
                assert health["engine"]["precision"] == engine.choice.precision
            update = {"update_id": 99, "message": fake.text_message(ALICE, ALICE.id, "/start")}
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with session.post(url, json=update, headers=headers) as response:
                    assert response.status == 403
            async with session.post(url, data=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as response:
                assert response.status == 400
            async with session.post(url, data=b"x" * (2 * 1024 * 1024), headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as response:
                assert response.status == 413
        assert fake.calls_to("sendMessage") == [], "a rejected request was processed"

        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        assert "getFile" not in fake.methods()
        await fake.press(ALICE, "consent:agree")
        [reply] = await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        assert "Ink wash" in reply.params["caption"]
        assert all(status == 200 for status in fake.webhook_responses)
        assert bot.settings.telegram_webhook_secret == secret


async def test_cosmetic_start_up_failures_do_not_stop_the_bot(fake_telegram, data_dir, engine):
    fake = fake_telegram
    fake.failures += [Failure("setMyCommands", "server_error", times=10), Failure("setMyShortDescription", "bad_request", times=10)]
    async with running_bot(fake, data_dir, engine):
        await fake.send_text_from(ALICE, "/start")
        await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)


async def test_flood_control_is_waited_out_and_the_reply_arrives(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent(ALICE)
        fake.failures.append(Failure("sendPhoto", "retry_after", times=1, retry_after=1))
        fake.failures.append(Failure("editMessageText", "server_error", times=1))
        await fake.send_photo_from(ALICE, small_portrait, caption="pencil")
        await fake.wait_for("sendPhoto", chat_id=ALICE.id, timeout=20)
    assert "sendPhoto!retry_after" in fake.methods()
    assert fake.methods().count("sendPhoto") == 1


async def test_selfie_that_cannot_be_deleted_is_tolerated(fake_telegram, data_dir, engine, small_portrait, captured_logs):
    fake = fake_telegram
    fake.failures.append(Failure("deleteMessage", "bad_request", times=5, description="Bad Request: message can't be deleted"))
    async with running_bot(fake, data_dir, engine):
        await fake.consent(ALICE)
        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        await fake.wait_for_edit("Done", chat_id=ALICE.id)
        await fake.send_text_from(ALICE, "/styles")
        await fake.wait_for_text("Faithful styles", chat_id=ALICE.id)
    stream, _ = captured_logs
    assert "could not delete a message: message can't be deleted" in stream.getvalue()


async def test_album_is_styled_with_one_choice_and_answered_as_one_album(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent(ALICE)
        parts = [fake.photo_message(ALICE, ALICE.id, small_portrait, media_group_id="album1") for _ in range(3)]
        for part in parts:
            await fake.push({"message": part})
        picker = await fake.wait_for_text("Pick a style", chat_id=ALICE.id)
        assert len(fake.calls_to("sendMessage", ALICE.id)) == 3  # notice, thanks, one picker for the album
        await fake.press(ALICE, "pick:film", message=picker.result)
        [album] = await fake.wait_for("sendMediaGroup", chat_id=ALICE.id)
        deletes = await fake.wait_for("deleteMessage", count=3, chat_id=ALICE.id)
    assert len(album.params["media"]) == 3
    assert all(item["bytes"][:2] == b"\xff\xd8" for item in album.params["media"])
    assert {int(d.params["message_id"]) for d in deletes} == {p["message_id"] for p in parts}
    assert fake.calls_to("sendPhoto") == []


async def test_a_non_image_document_gets_a_clear_message(fake_telegram, data_dir, engine):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.push({"message": fake.document_message(ALICE, ALICE.id, b"%PDF-1.4", "application/pdf", "cv.pdf")})
        await fake.wait_for_text("doesn't look like a photo", chat_id=ALICE.id)
        assert "getFile" not in fake.methods()


async def test_token_is_only_in_api_paths(fake_telegram, data_dir, engine):
    # The adapter derives <url>/bot<token>/<method>: a wrong base would never reach the fake.
    async with running_bot(fake_telegram, data_dir, engine):
        await fake_telegram.wait_for("setMyCommands")
    assert fake_telegram.token == TOKEN


async def test_the_command_menu_is_the_command_table_in_english_and_chinese(fake_telegram, data_dir, engine):
    async with running_bot(fake_telegram, data_dir, engine):
        calls = await fake_telegram.wait_for("setMyCommands", count=2)
    menus = {call.params.get("language_code") or "en": call.params["commands"] for call in calls}
    for language, menu in menus.items():
        shown = [(c["command"], c["description"]) for c in menu]
        assert shown == [(c.name, TEXTS[c.description][language]) for c in COMMANDS if c.in_menu]
    assert set(menus) == {"en", "zh"}


async def test_reply_ttl_deletes_the_styled_album_and_keeps_no_reference(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, DARKROOM_REPLY_TTL="1") as bot:
        bot.janitor_interval = 0.2
        await fake.consent(ALICE)
        for _ in range(2):
            await fake.push({"message": fake.photo_message(ALICE, ALICE.id, small_portrait, caption="ink", media_group_id="a2")})
        [album] = await fake.wait_for("sendMediaGroup", chat_id=ALICE.id)
        [deleted] = await fake.wait_for("deleteMessages", chat_id=ALICE.id, timeout=15)
        rows = await bot.storage.dump()
    assert sorted(deleted.params["message_ids"]) == sorted(m["message_id"] for m in album.result)
    assert [r for r in rows if r[0] == "reply_refs"] == []


async def test_a_rejected_token_stops_start_up_with_a_clear_message(fake_telegram, data_dir, engine):
    import pytest

    from bot.app import Darkroom
    from bot.settings import StartupError, from_environment
    from tests.conftest import bot_environment

    settings = from_environment(bot_environment(fake_telegram, data_dir, TELEGRAM_BOT_TOKEN="999:wrong-token-xyz"), dotenv=None)
    darkroom = Darkroom(settings, engine=engine)
    with pytest.raises(StartupError, match="rejected TELEGRAM_BOT_TOKEN") as refused:
        await darkroom.start()
    await darkroom.stop(grace=1.0)
    assert "wrong-token" not in str(refused.value)


async def test_deeply_nested_json_on_the_webhook_is_a_400(fake_telegram, data_dir, engine, captured_logs):
    fake = fake_telegram
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    depth = 200_000
    deep = b'{"update_id": 5, "message": ' + b"[" * depth + b"]" * depth + b"}"
    moderately_deep = {"update_id": 6, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                                                   "text": "hi", "entities": [{"x": 1}]}}
    nest = moderately_deep["message"]
    for _ in range(900):  # deep enough to hurt a recursive reader, shallow enough for json
        nest["reply_to_message"] = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}
        nest = nest["reply_to_message"]
    async with running_bot(
        fake, data_dir, engine, TELEGRAM_MODE="webhook", TELEGRAM_WEBHOOK_URL=url, DARKROOM_HTTP_PORT=str(port)
    ):
        secret = fake.calls_to("setWebhook")[0].params["secret_token"]
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=deep, headers=headers) as response:
                assert response.status == 400
            async with session.post(url, json=moderately_deep, headers=headers) as response:
                assert response.status in (200, 400)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
        await fake.push({"message": fake.text_message(ALICE, ALICE.id, "/start")})
        await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
    stream, _ = captured_logs
    assert "Traceback" not in stream.getvalue() and "RecursionError" not in stream.getvalue()
