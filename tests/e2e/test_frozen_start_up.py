"""The bot freezes what start-up built out of the garbage collector (bot/safeguards/heap.py), so that the
full collection ending each job is cheap, and does so before anything that receives photos
exists: whatever the platforms and the jobs make stays collectable (a frozen object is never
collected, and one holding a photo would keep it). The platforms' libraries (their code and
module-level data) are imported before it, so that each job's collection does not walk them."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from pathlib import Path

from tests.conftest import bot_environment, running_bot
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


# In a process of its own, as `darkroom run`: here pytest imported the libraries long before.
CHILD = """
import asyncio, gc, json, sys
from bot.app import Darkroom
from bot.settings import from_environment
from inference import Engine

async def main():
    darkroom = Darkroom(from_environment(dict(__import__("os").environ), dotenv=None), engine=Engine())
    await darkroom.start()
    try:
        live = {id(o) for o in gc.get_objects()}
        print(json.dumps({
            "imported_first": "telegram" not in START,
            "library_frozen": {name: id(obj) not in live for name, obj in (
                ("telegram.Message", sys.modules["telegram"].Message),
                ("httpcore.AsyncConnectionPool", sys.modules["httpcore"].AsyncConnectionPool),
                ("h11.Connection", sys.modules["h11"].Connection))},
            "client_collectable": id(darkroom.telegram_receiver.app) in live,
            "walked": len(live),
        }))
    finally:
        await darkroom.stop(grace=5.0)

START = set(sys.modules)
asyncio.run(main())
"""


async def test_the_platforms_libraries_are_imported_before_the_freeze(fake_telegram, data_dir):
    """Python-telegram-bot, httpx and what httpx imports at its first request are frozen with
    start-up (each job's full collection walked ~37,000 more objects, 13 ms of CPU, while they
    were imported after it); the platform's client, made after the freeze, stays collectable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(bot_environment(fake_telegram, data_dir), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=180)
    assert child.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["imported_first"]  # so that the check below means something
    assert all(seen["library_frozen"].values()), seen["library_frozen"]
    assert seen["client_collectable"]
    assert seen["walked"] < 10_000, seen["walked"]
