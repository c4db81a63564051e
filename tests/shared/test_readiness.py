"""The front's GET /readyz (200 only when a photo sent now can be styled; otherwise 503 and a
fixed reason code), its wait for Redis at start-up, and its capacity taken from the workers'
heartbeats (a worker added anywhere adds capacity without a restart)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from redis import Redis

from bot.safeguards.pseudonym import Pseudonymizer
from bot.scale.keys import Keys
from bot.scale.state import connect
from bot.settings import from_environment
from tests.conftest import SECRET, running_bot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def readyz(port: int) -> tuple[int, dict]:
    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(get)


async def test_in_process_the_front_is_ready_once_its_engine_and_database_answer(fake_telegram, data_dir, engine):
    port = free_port()
    async with running_bot(fake_telegram, data_dir, engine, DARKROOM_METRICS="true", DARKROOM_HTTP_PORT=str(port)) as bot:
        assert await readyz(port) == (200, {"status": "ok", "reason": "ok"})
        ping = bot.storage.ping

        async def gone():
            raise OSError("connection refused")  # what a database that went away answers

        bot.storage.ping = gone
        assert await readyz(port) == (503, {"status": "unavailable", "reason": "database_unavailable"})
        bot.storage.ping = ping
        assert (await readyz(port))[0] == 200


@pytest.mark.redis
async def test_scaled_out_the_front_is_ready_only_with_a_free_live_worker(fake_telegram, data_dir, engine, redis_url):
    port = free_port()
    redis = Redis.from_url(redis_url)
    async with running_bot(
        fake_telegram, data_dir, engine, DARKROOM_BROKER_URL=redis_url, DARKROOM_METRICS="true", DARKROOM_HTTP_PORT=str(port)
    ) as bot:
        assert await readyz(port) == (503, {"status": "unavailable", "reason": "no_worker"})
        redis.set(Keys().worker("a" * 32), b"0", ex=15)  # a styling process, busy
        assert await readyz(port) == (503, {"status": "unavailable", "reason": "no_free_worker"})
        redis.set(Keys().worker("b" * 32), b"1", ex=15)  # another, free
        assert await readyz(port) == (200, {"status": "ok", "reason": "ok"})

        # Capacity follows the heartbeats: two processes, so three jobs out at once; one more
        # worker started anywhere, and the front takes it into account without a restart.
        deadline = time.monotonic() + 20
        while bot.queue.workers != 3:
            assert time.monotonic() < deadline, bot.queue.workers
            await asyncio.sleep(0.2)
        redis.set(Keys().worker("c" * 32), b"1", ex=15)
        while bot.queue.workers != 4:
            assert time.monotonic() < deadline, bot.queue.workers
            await asyncio.sleep(0.2)
        assert len([t for t in bot.queue._tasks if not t.done()]) == 4

        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
        assert "darkroom_workers 3.0" in metrics and "darkroom_workers_free 2.0" in metrics
        assert "darkroom_queue_depth 0.0" in metrics
    redis.close()


@pytest.mark.redis
async def test_the_front_waits_for_redis_at_start_instead_of_exiting(tmp_path, caplog):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings = from_environment({"DARKROOM_DATA_DIR": str(tmp_path), "DARKROOM_SECRET": SECRET, "DARKROOM_REDIS_URL": url}, dotenv=None)
    connecting = asyncio.create_task(connect(settings, Pseudonymizer(SECRET.encode()), wait=True))
    await asyncio.sleep(2.0)
    assert not connecting.done()  # still waiting, not stopped
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        shared = await asyncio.wait_for(connecting, timeout=30)
        await shared.close()
    finally:
        server.kill()
        server.wait()
    lines = [r.getMessage() for r in caplog.records if "waiting for Redis" in r.getMessage()]
    assert lines == [f"waiting for Redis at 127.0.0.1:{port} (ConnectionError); retrying with backoff"]  # one line, not one per try
