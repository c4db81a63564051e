"""Privacy proof on Telegram: a canary photo goes through consent, styling, reply and deletion;
afterwards no byte of it, and no identifier of its sender, is at rest or in any log line."""

from __future__ import annotations

import io

from PIL import Image

from tests.conftest import TOKEN, running_bot
from tests.fakes.telegram_api import User
from tests.privacy_scan import make_canary, now, rest_roots, scan_files, scan_text

ZORAIDA = User(987654321, "Zoraida", "zoraida_q_secret", "en")


async def test_canary_photo_leaves_no_trace_at_rest_or_in_logs(fake_telegram, data_dir, engine, grace_rgb, captured_logs):
    fake = fake_telegram
    canary = make_canary(grace_rgb)
    started = now()
    async with running_bot(fake, data_dir, engine) as bot:
        selfie = await fake.send_photo_from(ZORAIDA, canary.jpeg, caption="Zoraida's private caption 42")
        await fake.wait_for_text("Do you agree?", chat_id=ZORAIDA.id)
        await fake.press(ZORAIDA, "consent:agree")
        await fake.wait_for_text("Pick a style", chat_id=ZORAIDA.id)
        await fake.press(ZORAIDA, "pick:watercolour")
        [reply] = await fake.wait_for("sendPhoto", chat_id=ZORAIDA.id)
        await fake.wait_for("deleteMessage", chat_id=ZORAIDA.id)
        rows_during = await bot.storage.dump()
        await fake.send_text_from(ZORAIDA, "/delete_my_data")
        receipt = await fake.wait_for_text("Receipt", chat_id=ZORAIDA.id)
        rows_after = await bot.storage.dump()

    file_ids = [fid for fid, (data, _) in fake.files.items() if data == canary.jpeg]
    file_paths = [path for data, path in fake.files.values() if data == canary.jpeg]
    identifiers = [str(ZORAIDA.id), ZORAIDA.username, ZORAIDA.first_name, "private caption", TOKEN, *file_ids, *file_paths]

    # 1. Nothing of the photo at rest: data dir, temp dir, working dir.
    assert scan_files(rest_roots(data_dir), canary.needles, since=started) == []
    # 2. The reply carries none of the input's metadata.
    assert canary.marker not in reply.files["photo"]
    assert "exif" not in Image.open(io.BytesIO(reply.files["photo"])).info
    # 3. No identifier (nor the marker) in any log record, raw or as written.
    stream, records = captured_logs
    logged = [stream.getvalue()] + [r.getMessage() for r in records]
    assert len(records) > 5, "logging was not captured"
    assert scan_text(logged, identifiers + [canary.marker.decode()]) == []
    # 4. No identifier in any database row, during the flow or after; nothing after deletion.
    flat = " ".join(str(v) for row in rows_during for v in row)
    assert scan_text([flat], identifiers) == []
    assert any(row[0] == "consents" for row in rows_during)
    assert rows_after == []
    assert "consent records: 2" in receipt.params["text"]
    raw_db = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file())
    assert all(i.encode() not in raw_db for i in identifiers)
    # 5. The selfie message itself was removed from the chat.
    assert int(fake.calls_to("deleteMessage")[0].params["message_id"]) == selfie["message_id"]
