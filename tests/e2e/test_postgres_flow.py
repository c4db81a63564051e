"""The whole private-chat journey with DARKROOM_DATABASE_URL on a real PostgreSQL server, through
the real python-telegram-bot against the fake Bot API: consent, a canary photo styled, the reply,
/delete_my_data. Every table and row of the database is read straight from the server (not
through Storage) and scanned for the sender's identifiers and the photo."""

from __future__ import annotations

import asyncpg
import pytest

from bot.settings import StartupError, from_environment
from tests.conftest import TOKEN, bot_environment, running_bot
from tests.fakes.telegram_api import User
from tests.privacy_scan import make_canary, now, rest_roots, scan_files, scan_text

pytestmark = pytest.mark.postgres

YSOLDE = User(555444333, "Ysolde", "ysolde_q_private", "en")


async def every_row(url: str) -> list[tuple]:
    """Every row of every table in the database's current schema, read with a connection of our own."""
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        rows = []
        for (table,) in tables:
            rows += [(table, *record) for record in await connection.fetch(f'SELECT * FROM "{table}"')]
        return rows
    finally:
        await connection.close()


def flatten(rows: list[tuple]) -> bytes:
    return b" ".join(v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row)


async def test_telegram_journey_on_postgresql_stores_no_identifier_and_erases_everything(
    fake_telegram, data_dir, engine, grace_rgb, captured_logs, postgres_url
):
    fake = fake_telegram
    canary = make_canary(grace_rgb)
    started = now()
    # With DARKROOM_REPLY_TTL the database also holds the reply's (sealed) chat address.
    async with running_bot(fake, data_dir, engine, DARKROOM_DATABASE_URL=postgres_url, DARKROOM_REPLY_TTL="3600") as bot:
        assert bot.storage.engine == "postgresql"
        await fake.send_photo_from(YSOLDE, canary.jpeg, caption="Ysolde's private caption 17")
        await fake.wait_for_text("Do you agree?", chat_id=YSOLDE.id)
        await fake.press(YSOLDE, "consent:agree")
        await fake.wait_for_text("Pick a style", chat_id=YSOLDE.id)
        await fake.press(YSOLDE, "pick:ink")
        [reply] = await fake.wait_for("sendPhoto", chat_id=YSOLDE.id)
        await fake.wait_for("deleteMessage", chat_id=YSOLDE.id)
        rows_during = await every_row(postgres_url)
        await fake.send_text_from(YSOLDE, "/delete_my_data")
        receipt = await fake.wait_for_text("Receipt", chat_id=YSOLDE.id)
        rows_after = await every_row(postgres_url)

    file_ids = [fid for fid, (data, _) in fake.files.items() if data == canary.jpeg]
    file_paths = [path for data, path in fake.files.values() if data == canary.jpeg]
    identifiers = [str(YSOLDE.id), YSOLDE.username, YSOLDE.first_name, "private caption", TOKEN, *file_ids, *file_paths]

    assert reply.files["photo"] and canary.marker not in reply.files["photo"]
    assert {row[0] for row in rows_during} >= {"consents", "consent_history", "reply_refs"}, "not stored in PostgreSQL"
    stored = flatten(rows_during)
    assert [i for i in identifiers if i.encode() in stored] == []
    assert [n for n in canary.needles if n in stored] == []
    assert rows_after == [], "rows survived /delete_my_data"
    assert "consent records: 2" in receipt.params["text"]
    # Nothing went to SQLite, and nothing of the photo is at rest on this machine.
    assert not (data_dir / "darkroom.sqlite3").exists()
    assert scan_files(rest_roots(data_dir), canary.needles, since=started) == []
    stream, records = captured_logs
    logged = [stream.getvalue()] + [r.getMessage() for r in records]
    assert scan_text(logged, identifiers + [canary.marker.decode(), postgres_url]) == []


async def test_consent_given_to_one_process_is_known_to_another(fake_telegram, data_dir, engine, small_portrait, postgres_url):
    """Two Darkroom processes in turn on one database (and one DARKROOM_SECRET): the second does
    not ask again, it offers the styles at once."""
    fake = fake_telegram

    def said(fragment: str) -> int:
        return len([c for c in fake.calls_to("sendMessage", YSOLDE.id) if fragment in str(c.params.get("text", ""))])

    async with running_bot(fake, data_dir / "one", engine, DARKROOM_DATABASE_URL=postgres_url):
        await fake.send_photo_from(YSOLDE, small_portrait)
        await fake.wait_for_text("Do you agree?", chat_id=YSOLDE.id)
        await fake.press(YSOLDE, "consent:agree")
        await fake.wait_for_text("Pick a style", chat_id=YSOLDE.id)
    assert said("Do you agree?") == 1 and said("Pick a style") == 1
    async with running_bot(fake, data_dir / "two", engine, DARKROOM_DATABASE_URL=postgres_url):
        await fake.send_photo_from(YSOLDE, small_portrait)
        await fake.wait_for("sendMessage", count=2, chat_id=YSOLDE.id, where=lambda c: "Pick a style" in str(c.params.get("text", "")))
        await fake.press(YSOLDE, "pick:ink")
        await fake.wait_for("sendPhoto", chat_id=YSOLDE.id)
    assert said("Do you agree?") == 1, "the second process asked for consent again"


async def test_a_database_that_refuses_the_password_stops_start_up_with_one_clear_line(
    fake_telegram, data_dir, engine, postgres_url, captured_logs
):
    from urllib.parse import urlsplit

    from bot.app import Darkroom

    parts = urlsplit(postgres_url)
    url = parts._replace(netloc=f"{parts.username}:NotThePassword1234@{parts.hostname}:{parts.port}").geturl()
    settings = from_environment(bot_environment(fake_telegram, data_dir, DARKROOM_DATABASE_URL=url), dotenv=None)
    bot = Darkroom(settings, engine=engine)
    with pytest.raises(StartupError) as refused:
        await bot.start()
    await bot.stop(grace=0.1)
    assert "PostgreSQL" in str(refused.value) and "NotThePassword1234" not in str(refused.value)
    stream, records = captured_logs
    assert "NotThePassword1234" not in stream.getvalue()
    assert "Traceback" not in stream.getvalue()
