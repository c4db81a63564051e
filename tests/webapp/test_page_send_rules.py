"""Red-team cases for the page's opt-in upload (`POST /app/send`): it counts against the chat's
per-person limits, reads one upload at a time per person and a few for everyone, keeps another
person's chat responsive, and a page result follows the rules of a chat result (the reply TTL, and
erasure, even while it is still uploading, with the receipt counting it). Also: aiohttp's own
404/405 answers carry the page's security headers."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import numpy as np

from bot.web.page import MAX_UPLOADS, WebApp
from bot.web.server import HttpServer, build_app
from tests.conftest import ALICE, BOB, TOKEN, running_bot
from tests.webapp.initdata import signed_init_data


def _styled_jpeg(padding: int = 0) -> bytes:
    from inference.imageio import SOURCE_NEURAL, AILabel, encode_jpeg

    rgb = np.full((64, 48, 3), 120, dtype=np.uint8)
    # bytes after the end-of-image marker: a large upload that is still a labelled JPEG
    return encode_jpeg(rgb, AILabel(SOURCE_NEURAL, "Ink wash", "Darkroom test")) + b"\0" * padding


async def _send(session: aiohttp.ClientSession, url: str, init_data: str, body: bytes) -> int:
    headers = {"X-Telegram-Init-Data": init_data, "Content-Type": "image/jpeg"}
    async with session.post(f"{url}/app/send", data=body, headers=headers) as response:
        await response.read()
        return response.status


# The flood comes from another process, so that the client's own buffers are not counted as the
# bot's memory (asyncio copies what a socket cannot take yet).
FLOOD = """
import asyncio, json, sys
import aiohttp
url, init_data, size, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = sys.stdin.buffer.read() + bytes(size)
async def send(session):
    headers = {"X-Telegram-Init-Data": init_data, "Content-Type": "image/jpeg"}
    try:
        async with session.post(url + "/app/send", data=body, headers=headers) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0  # the server answered before reading the body and closed the connection
async def main():
    async with aiohttp.ClientSession() as session:
        print(json.dumps(await asyncio.gather(*(send(session) for _ in range(count)))))
asyncio.run(main())
"""


async def _flood(url: str, init_data: str, padding: int, count: int) -> list[int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, url, init_data, str(padding), str(count),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate(_styled_jpeg())
    return json.loads(out)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


async def _help_seconds(fake, user, times: int = 8) -> list[float]:
    seconds = []
    for _ in range(times):
        before = len(fake.calls_to("sendMessage", chat_id=user.id))
        started = time.monotonic()
        await fake.send_text_from(user, "/help")
        await fake.wait_for("sendMessage", count=before + 1, chat_id=user.id)
        seconds.append(time.monotonic() - started)
    return seconds


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


async def test_sixty_sends_on_one_launch_keep_the_limit_memory_and_others_help(fake_telegram, data_dir, engine):
    fake = fake_telegram
    fake.delays["sendPhoto"] = 0.2  # an upload takes a moment, as it does to Telegram
    async with running_bot(fake, data_dir, engine, DARKROOM_WEBAPP_URL="https://darkroom.example/app/",
                           DARKROOM_RATE_LIMIT_PER_HOUR="3") as darkroom:
        url = f"http://127.0.0.1:{darkroom.http.port}"
        await fake.consent(ALICE)
        await fake.consent(BOB)
        quiet = await _help_seconds(fake, BOB)
        launch = signed_init_data(TOKEN, ALICE.id)  # one signature, replayed 60 times at once
        baseline, peak = _rss_mb(), 0.0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, _rss_mb())
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        # 8 MB each: 480 MB if all were read at once
        flood = asyncio.create_task(_flood(url, launch, 8 * 1024 * 1024, 60))
        busy = await _help_seconds(fake, BOB)
        statuses = await flood
        sampler.cancel()
        await asyncio.sleep(0.5)
        sent = fake.calls_to("sendPhoto", chat_id=ALICE.id)
        print(f"60 sends: {statuses.count(200)} sent, {statuses.count(429)} refused; RSS +{peak - baseline:.0f} MB; "
              f"Bob's /help p95 {_p95(quiet) * 1000:.0f} ms quiet, {_p95(busy) * 1000:.0f} ms during")
        assert statuses.count(200) == len(sent) <= 3  # the hourly limit of the chat holds
        assert set(statuses) <= {200, 429, 0} and len(statuses) == 60
        assert peak - baseline < MAX_UPLOADS * 8 * 2 + 60, f"RSS grew {peak - baseline:.0f} MB"
        assert _p95(busy) <= max(2 * _p95(quiet), _p95(quiet) + 0.25)
        # one after another, the chat's hourly limit (3) holds
        async with aiohttp.ClientSession() as session:
            one_by_one = [await _send(session, url, launch, _styled_jpeg()) for _ in range(5)]
        assert len(fake.calls_to("sendPhoto", chat_id=ALICE.id)) == 3
        assert one_by_one[-3:] == [429, 429, 429]


async def test_a_page_result_follows_the_reply_ttl_and_is_erased_with_a_receipt(fake_telegram, data_dir, engine):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, DARKROOM_WEBAPP_URL="https://darkroom.example/app/",
                           DARKROOM_REPLY_TTL="3600") as darkroom:
        url = f"http://127.0.0.1:{darkroom.http.port}"
        await fake.consent(ALICE)
        async with aiohttp.ClientSession() as session:
            assert await _send(session, url, signed_init_data(TOKEN, ALICE.id), _styled_jpeg()) == 200
        [photo] = fake.calls_to("sendPhoto", chat_id=ALICE.id)
        message_id = photo.result["message_id"]
        await fake.send_text_from(ALICE, "/delete_my_data")
        receipt = await fake.wait_for_text("Receipt", chat_id=ALICE.id)
        assert "styled photos and previews of mine deleted from the chat: 1" in receipt.params["text"]
        deleted = [int(c.params["message_id"]) for c in fake.calls_to("deleteMessage", chat_id=ALICE.id)]
        assert message_id in deleted


async def test_a_page_result_still_uploading_is_taken_back_after_erasure(fake_telegram, data_dir, engine):
    fake = fake_telegram
    async with running_bot(fake, data_dir, engine, DARKROOM_WEBAPP_URL="https://darkroom.example/app/",
                           DARKROOM_REPLY_TTL="3600") as darkroom:
        url = f"http://127.0.0.1:{darkroom.http.port}"
        await fake.consent(ALICE)
        fake.delays["sendPhoto"] = 2.0  # it lands 2 s later, after the receipt
        async with aiohttp.ClientSession() as session:
            upload = asyncio.create_task(_send(session, url, signed_init_data(TOKEN, ALICE.id), _styled_jpeg()))
            await fake.wait_for_arrival("sendPhoto")
            await fake.send_text_from(ALICE, "/delete_my_data")
            receipt = await fake.wait_for_text("Receipt", chat_id=ALICE.id)
            assert "queued or running jobs cancelled: 1" in receipt.params["text"]  # the receipt counts it
            assert await upload == 409  # not delivered: the person erased their data meanwhile
        [photo] = await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        await fake.wait_for_text("arrived after the receipt", chat_id=ALICE.id)
        deleted = [int(c.params["message_id"]) for c in fake.calls_to("deleteMessage", chat_id=ALICE.id)]
        assert photo.result["message_id"] in deleted
        # and with consent gone, the next one is refused with "agree in the chat first"
        async with aiohttp.ClientSession() as session:
            assert await _send(session, url, signed_init_data(TOKEN, ALICE.id), _styled_jpeg()) == 409


async def test_aiohttps_own_404_and_405_carry_the_security_headers(engine):
    server = HttpServer(build_app(webapp=WebApp(engine.catalogue, engine.config.software)), "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for method, path, status in (("GET", "/nothing-here", 404), ("POST", "/app/styles.json", 405), ("PUT", "/healthz", 405)):
                async with session.request(method, f"http://127.0.0.1:{server.port}{path}") as response:
                    assert response.status == status, (method, path)
                    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
                    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    finally:
        await server.stop()
