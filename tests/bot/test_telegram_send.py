"""The Telegram adapter's outbound path: flood control waits in the flooded chat only, and
shutting down cuts every wait short."""

from __future__ import annotations

import asyncio
import time

import pytest
from telegram.error import RetryAfter

from bot.platforms.telegram.client import TelegramClient
from bot.settings import from_environment
from handlers.events import Address
from handlers.ports import DeliveryFailed
from handlers.replies import ChatAction
from tests.conftest import SECRET, TOKEN

FLOODED, OTHER = 111, 222


@pytest.fixture
def platform(tmp_path) -> TelegramClient:
    settings = from_environment(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": "http://127.0.0.1:9", "DARKROOM_DATA_DIR": str(tmp_path),
         "DARKROOM_SECRET": SECRET},
        dotenv=None,
    )
    return TelegramClient(settings)


class Api:
    """A Bot API method: the flooded chat is refused with retry_after until ``free_at``."""

    __name__ = "send_message"

    def __init__(self, retry_after: int) -> None:
        self.free_at = time.monotonic() + retry_after
        self.retry_after = retry_after
        self.delivered: list[tuple[int, float]] = []

    async def __call__(self, chat_id: int, text: str = ""):
        if chat_id == FLOODED and time.monotonic() < self.free_at:
            raise RetryAfter(self.retry_after)
        self.delivered.append((chat_id, time.monotonic()))
        return chat_id


async def test_flood_control_waits_in_the_flooded_chat_only(platform):
    api = Api(retry_after=1)
    begun = time.monotonic()
    flooded = [asyncio.create_task(platform.call(api, FLOODED, chat=FLOODED)) for _ in range(3)]
    await asyncio.sleep(0.05)
    for _ in range(5):
        assert await platform.call(api, OTHER, chat=OTHER) == OTHER
    assert [c for c, _ in api.delivered] == [OTHER] * 5
    assert all(at - begun < 0.2 for _, at in api.delivered)
    assert await asyncio.gather(*flooded) == [FLOODED] * 3  # waited, not lost, attempts not used up
    assert time.monotonic() - begun >= 1.0


async def test_a_chat_action_is_skipped_while_its_chat_waits(platform):
    platform._close_gate(FLOODED, 30)
    begun = time.monotonic()
    assert await platform.send(Address("telegram", str(FLOODED)), ChatAction("typing")) is None
    assert time.monotonic() - begun < 0.1


async def test_shutting_down_cuts_flood_waits_short(platform):
    api = Api(retry_after=60)
    waiting = asyncio.create_task(platform.call(api, FLOODED, chat=FLOODED))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    begun = time.monotonic()
    platform.wind_down(asyncio.get_running_loop().time() + 2.0)
    with pytest.raises(DeliveryFailed):
        await waiting
    assert time.monotonic() - begun < 0.2
    # A wait that ends before the give-up time is still waited out.
    short = Api(retry_after=1)
    assert await platform.call(short, FLOODED + 1, chat=FLOODED + 1) == FLOODED + 1


async def test_status_edits_for_a_chat_in_flood_wait_do_not_hold_the_sender(platform, monkeypatch):
    from handlers.events import MessageRef
    from handlers.replies import EditText

    edited: list[tuple[str, str]] = []

    async def edit(text, chat_id, message_id, reply_markup=None):
        edited.append((str(message_id), text))
        return True

    monkeypatch.setattr(type(platform.bot), "edit_message_text", lambda self, *a, **k: edit(*a, **k))
    platform._close_gate(FLOODED, 0.5)
    chat = Address("telegram", str(FLOODED))
    begun = time.monotonic()
    for step in ("Styling", "Still styling", "Done"):
        await platform.send(chat, EditText(MessageRef(chat, "7"), step))
    await platform.send(chat, EditText(MessageRef(chat, "8"), "Queued"))
    assert time.monotonic() - begun < 0.1 and edited == []
    while platform._editors:
        await asyncio.sleep(0.05)
    assert edited == [("7", "Done"), ("8", "Queued")]  # the newest text of each message, in order
