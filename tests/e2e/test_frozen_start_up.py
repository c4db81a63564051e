"""The bot freezes what start-up built out of the garbage collector (bot/safeguards/heap.py), so that the
full collection ending each job is cheap, and does so before anything that receives photos
exists: whatever the platforms and the jobs make stays collectable (a frozen object is never
collected, and one holding a photo would keep it)."""

from __future__ import annotations

import gc

from tests.conftest import running_bot
from tests.fakes.telegram_api import User

ADA = User(424242, "Ada", "ada_l", "en")


def collectable(obj) -> bool:
    """True when the collector still looks at ``obj`` (gc.get_objects leaves frozen ones out)."""
    return any(o is obj for o in gc.get_objects())


async def test_start_up_is_frozen_before_the_platforms_and_thawed_at_stop(fake_telegram, data_dir, engine, small_portrait):
    async with running_bot(fake_telegram, data_dir, engine) as darkroom:
        assert gc.get_freeze_count() > 10_000  # the libraries and the engine
        assert not collectable(darkroom.engine)  # built before: frozen
        assert collectable(darkroom.telegram) and collectable(darkroom.telegram_receiver.app)  # after: not
        await fake_telegram.consent_with_style(ADA, "ink")
        await fake_telegram.send_photo_from(ADA, small_portrait)
        assert await fake_telegram.wait_for("sendPhoto", chat_id=ADA.id, timeout=120)
    assert gc.get_freeze_count() == 0
