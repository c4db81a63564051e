"""The whole private-chat journey through the real python-telegram-bot against a fake Bot API."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.conftest import ALICE, running_bot


async def test_first_photo_gets_consent_then_styled_reply(fake_telegram, data_dir, engine, small_portrait):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        selfie = await fake.send_photo_from(ALICE, small_portrait)
        notice = await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        assert "getFile" not in fake.methods(), "a photo was downloaded before consent"
        assert fake.file_downloads == []

        await fake.press(ALICE, "consent:agree")
        await fake.wait_for_text("Pick a style", chat_id=ALICE.id)
        assert "getFile" not in fake.methods()

        await fake.press(ALICE, "pick:ink")
        [reply] = await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        await fake.wait_for("deleteMessage", chat_id=ALICE.id)

    methods = fake.methods()
    assert methods.index("getFile") > methods.index("sendMessage")
    assert notice.at < fake.calls_to("getFile")[0].at
    out = np.asarray(Image.open(io.BytesIO(reply.files["photo"])).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(io.BytesIO(small_portrait)).convert("RGB"), dtype=np.int16)
    assert out.shape == original.shape
    assert np.abs(out - original).mean() > 10, "the reply looks like the input"
    assert "Ink wash" in reply.params["caption"] and "deleted" in reply.params["caption"]
    [deleted] = fake.calls_to("deleteMessage")
    assert int(deleted.params["message_id"]) == selfie["message_id"]
    edits = [c.params["text"] for c in fake.calls_to("editMessageText", ALICE.id)]
    assert any("Done" in e for e in edits)
