"""A flood from one person never stalls anyone else: real python-telegram-bot against the fake
Bot API, with the flooder's chat answered slowly or under Telegram's flood control (429), and
the real `darkroom run` stopped with SIGTERM while that chat is in flood wait.

Counts are scaled down from the benchmark (bench/flood.py) but keep its shape: more updates
than python-telegram-bot would work on at once (256), so that anything holding a shared slot
while one chat waits shows up as another person's wait."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.conftest import ALICE, running_bot
from tests.fakes.telegram_api import User
from tests.proofs.test_crash_and_shutdown import start_bot

FLOODER = User(444000444, "Flo", "flooder", "en")
FLOOD = 300  # more than PTB's 256 concurrent updates


async def flood_commands(fake, count: int = FLOOD) -> None:
    for i in range(count):
        await fake.send_text_from(FLOODER, "/help")


async def answer_time(fake, user: User, text: str = "/help") -> float:
    before = len(fake.calls_to("sendMessage", user.id))
    sent = time.monotonic()
    await fake.send_text_from(user, text)
    calls = await fake.wait_for("sendMessage", count=before + 1, chat_id=user.id, timeout=60)
    return calls[before].at - sent


async def press_time(fake, user: User, data: str) -> float:
    before = len(fake.calls_to("answerCallbackQuery"))
    pressed = time.monotonic()
    await fake.press(user, data)
    calls = await fake.wait_for("answerCallbackQuery", count=before + 1, timeout=60)
    return calls[before].at - pressed


async def test_a_slow_chat_with_a_backlog_does_not_delay_anyone_else(fake_telegram, data_dir, engine):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        fake.chat_delays[FLOODER.id] = 0.3  # every reply to the flooder takes 0.3 s
        await flood_commands(fake)
        await fake.wait_for("sendMessage", chat_id=FLOODER.id, timeout=30)  # the flood is being answered
        assert await answer_time(fake, ALICE, "/start") < 1.5  # the consent notice, with its buttons
        assert await press_time(fake, ALICE, "consent:agree") < 1.5
        # The flooder's backlog was bounded: what did not fit was dropped, with one notice.
        await asyncio.sleep(1.0)
        texts = [c.params["text"] for c in fake.calls_to("sendMessage", FLOODER.id)]
        assert sum("slow down" in t for t in texts) == 1
        assert len(texts) < 40, len(texts)


async def test_flood_control_for_one_chat_holds_only_that_chat(fake_telegram, data_dir, engine):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        fake.chat_floods[FLOODER.id] = 3.0  # Telegram: one message per 3 s to that chat, 429 for the rest
        await flood_commands(fake)
        await fake.wait_for("sendMessage!flood", timeout=30)
        assert await answer_time(fake, ALICE, "/start") < 1.5  # the consent notice, with its buttons
        assert await press_time(fake, ALICE, "consent:agree") < 1.5
        # The flooder's replies still arrive, one per retry_after: they waited, they were not lost.
        await fake.wait_for("sendMessage", count=2, chat_id=FLOODER.id, timeout=30)


async def test_a_flood_of_photos_gets_a_few_answers_and_others_are_still_served(
    fake_telegram, data_dir, engine, small_portrait
):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine):
        await fake.consent(FLOODER)
        await fake.consent(ALICE)
        before = len(fake.calls_to("sendMessage", FLOODER.id))
        for _ in range(100):
            await fake.send_photo_from(FLOODER, small_portrait, caption="ink")
        await asyncio.sleep(1.0)
        await fake.send_photo_from(ALICE, small_portrait, caption="ink")
        await fake.wait_for("sendPhoto", chat_id=ALICE.id, timeout=60)
        await asyncio.sleep(2.0)
        to_flooder = fake.calls_to("sendMessage", FLOODER.id)[before:]
        # A status message per accepted photo (5 may wait) and one refusal, not one per photo.
        assert len(to_flooder) <= 5 + 2, [c.params["text"][:40] for c in to_flooder]


async def test_sigterm_exits_within_grace_while_a_chat_is_in_flood_wait(fake_telegram, tmp_path, small_portrait):
    fake = fake_telegram
    data_dir, workdir = tmp_path / "data", tmp_path / "work"
    workdir.mkdir()
    bot = await start_bot(fake, data_dir, workdir)
    try:
        await fake.consent_with_style(FLOODER, "ink")
        fake.chat_floods[FLOODER.id] = 60.0  # a minute between messages to that chat
        await fake.send_photo_from(FLOODER, small_portrait)
        await flood_commands(fake, FLOOD)
        await fake.wait_for("sendMessage!flood", timeout=30)
        await asyncio.sleep(1.0)
        stopping = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(bot.wait(), timeout=60)
        took = time.monotonic() - stopping
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    stderr = (await bot.stderr.read()).decode()
    assert code == 0, stderr[-2000:]
    print(f"SIGTERM took {took:.1f}s")
    assert took < 10 + 5, f"SIGTERM took {took:.1f}s"  # the default grace is 10 s
    assert "Traceback" not in stderr
