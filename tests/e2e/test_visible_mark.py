"""The explicit AI mark through the real bot: on WeChat results by default (people in mainland
China, GB 45438), off when switched off, and not on Telegram results unless asked for."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference import StyleRequest
from tests.conftest import ALICE
from tests.e2e.test_wechat_flow import OPENID, consent_by_typing, wechat_bot
from tests.inference.test_provenance import mark_box


def pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)


def carries_the_mark(delivered: bytes, engine, photo: bytes, style: str) -> bool:
    """Whether ``delivered`` looks like the engine's marked result of ``photo`` where the mark
    goes, rather than the unmarked one (the two differ only there)."""
    marked = engine.stylize(photo, StyleRequest(style, mark=True)).jpeg
    plain = engine.stylize(photo, StyleRequest(style)).jpeg
    x0, y0, x1, y1 = mark_box(marked, plain)
    got = pixels(delivered)[y0:y1, x0:x1]
    to_marked = np.abs(got - pixels(marked)[y0:y1, x0:x1]).mean()
    to_plain = np.abs(got - pixels(plain)[y0:y1, x0:x1]).mean()
    assert min(to_marked, to_plain) < 6, (to_marked, to_plain)  # it is one of the two
    return bool(to_marked < to_plain)


async def wechat_and_telegram_results(fake_telegram, api, data_dir, engine, photo, **overrides) -> tuple[bytes, bytes]:
    async with wechat_bot(fake_telegram, api, data_dir, engine, **overrides) as (bot, sender):
        await consent_by_typing(api, sender)
        await sender.post(sender.text_xml(OPENID, "风格 水墨"), OPENID)  # ink, in Chinese
        await api.wait_for_text("水墨", OPENID)
        api.media["MEDIA_M"] = photo
        await sender.post(sender.image_xml(OPENID, "MEDIA_M"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)))
        await fake_telegram.send_photo_from(ALICE, photo, caption="ink")
        await fake_telegram.wait_for_text("Do you agree?", chat_id=ALICE.id)
        await fake_telegram.press(ALICE, "consent:agree")
        await fake_telegram.wait_for("sendPhoto", chat_id=ALICE.id)
    [image] = [m for m in api.sent(OPENID) if m["msgtype"] == "image"]
    [sent] = fake_telegram.calls_to("sendPhoto", ALICE.id)
    return api.uploads[image["image"]["media_id"]], sent.files["photo"]


async def test_wechat_results_carry_the_mark_by_default_and_telegram_results_do_not(
    fake_telegram, wechat_api, data_dir, engine, small_portrait
):
    wechat, telegram = await wechat_and_telegram_results(fake_telegram, wechat_api, data_dir, engine, small_portrait)
    assert carries_the_mark(wechat, engine, small_portrait, "ink")
    assert not carries_the_mark(telegram, engine, small_portrait, "ink")


async def test_the_wechat_mark_can_be_switched_off(fake_telegram, wechat_api, data_dir, engine, small_portrait):
    wechat, _ = await wechat_and_telegram_results(
        fake_telegram, wechat_api, data_dir, engine, small_portrait, DARKROOM_WECHAT_VISIBLE_LABEL="false"
    )
    assert not carries_the_mark(wechat, engine, small_portrait, "ink")


async def test_full_quality_file_arrives_byte_for_byte_through_the_bot_api(fake_telegram, data_dir, engine, small_portrait):
    """Through python-telegram-bot and the fake Bot API: the button under the result sends the
    very bytes of the result as a document (so every label and the credentials survive)."""
    from tests.conftest import running_bot

    async with running_bot(fake_telegram, data_dir, engine):
        await fake_telegram.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake_telegram.wait_for_text("Do you agree?", chat_id=ALICE.id)
        await fake_telegram.press(ALICE, "consent:agree")
        await fake_telegram.wait_for("sendPhoto", chat_id=ALICE.id)
        [photo] = fake_telegram.calls_to("sendPhoto", ALICE.id)
        await fake_telegram.press(ALICE, "file:")
        await fake_telegram.wait_for("sendDocument", chat_id=ALICE.id)
    [document] = fake_telegram.calls_to("sendDocument", ALICE.id)
    assert document.files["document"] == photo.files["photo"]
