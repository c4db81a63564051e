"""The test run's own memory is bounded: the fakes stop recording a runaway and fail its test
with one clear line, and the memory guard (tests/memory_guard.py) stops a run, or kills a child,
that grows past its limit, and reports the run's peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ALICE, TOKEN
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import FakeWeChatApi

ROOT = Path(__file__).resolve().parent.parent


async def test_a_retry_loop_against_the_fake_bot_api_fails_its_test_and_stops_growing():
    fake = await FakeTelegram(TOKEN).start()
    fake.max_calls = 50
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(80):  # a sender that never backs off
            async with session.post(f"{fake.url}/bot{TOKEN}/sendMessage", data={"chat_id": "1", "text": "again"}) as r:
                statuses.append(r.status)
    assert statuses[:50] == [200] * 50 and set(statuses[50:]) == {500}
    assert len(fake.calls) == 50 and len(fake.arrived) == 50  # nothing more was kept
    with pytest.raises(AssertionError, match="more than 50 calls: a retry loop without back-off"):
        await fake.wait_for("sendMessage", count=51, timeout=5)
    with pytest.raises(AssertionError, match="more than 50 calls"):
        await fake.stop()  # the fixture's teardown: the test fails even if it never looked


async def test_the_fake_bot_api_keeps_a_bounded_backlog_of_unfetched_updates():
    fake = await FakeTelegram(TOKEN).start()
    fake.max_backlog = 20
    try:
        for _ in range(20):  # nobody polls
            await fake.send_text_from(ALICE, "/help")
        with pytest.raises(AssertionError, match="20 updates nobody fetched: is the bot still polling"):
            await fake.send_text_from(ALICE, "/help")
    finally:
        await fake.stop()


async def test_a_retry_loop_against_the_fake_wechat_api_fails_its_test_and_stops_growing():
    api = await FakeWeChatApi(max_calls=30).start()
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(40):
            async with session.get(f"{api.url}/cgi-bin/token", params={"appid": "x", "secret": "y"}) as r:
                statuses.append(r.status)
    assert statuses[:30] == [200] * 30 and set(statuses[30:]) == {500}
    assert len(api.calls) == 30
    with pytest.raises(AssertionError, match="more than 30 calls: a retry loop without back-off"):
        await api.wait_for(lambda: False, timeout=5)
    with pytest.raises(AssertionError, match="more than 30 calls"):
        await api.stop()


# -- the memory guard, on a small pytest run of its own ----------------------------------------

CONFTEST = """
from tests.memory_guard import MemoryGuard, limit_from_environment

def pytest_configure(config):
    config.pluginmanager.register(MemoryGuard(limit_from_environment()), "darkroom-memory-guard")
"""


def run_pytest(tmp_path: Path, test: str, limit_mb: int) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_it.py").write_text(textwrap.dedent(test))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DARKROOM_TEST_RSS_LIMIT_MB": str(limit_mb)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_run_prints_its_peak_rss(tmp_path):
    result = run_pytest(tmp_path, """
        import subprocess, sys

        def test_a_child_of_80_mb():
            subprocess.run([sys.executable, "-c", "b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096])"], check=True)
    """, limit_mb=2048)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(text for text in result.stdout.splitlines() if text.startswith("peak RSS of the test run:"))
    pytest_mb, child_mb = (int(part.split(" MB")[0]) for part in line.split(": ", 1)[1].split(" / "))
    assert 10 < pytest_mb < 2048 and 80 <= child_mb < 2048, line
    assert "limit 2048 MB" in line


def test_a_run_that_grows_past_the_limit_is_stopped_with_one_clear_line(tmp_path):
    result = run_pytest(tmp_path, """
        import time

        def test_runaway():
            kept = []
            for _ in range(200):  # up to 2 GB, 10 MB at a time, touched so that it is resident
                kept.append(bytearray(10 << 20))
                kept[-1][::4096] = b"x" * len(kept[-1][::4096])
                time.sleep(0.02)

        def test_after():
            pass
    """, limit_mb=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "memory guard: pytest reached" in output and "test_it.py::test_runaway, above the limit of 300 MB" in output
    assert "peak RSS of the test run:" in output
    assert "1 passed" not in output  # the run stopped there: test_after never ran


def test_a_child_that_grows_past_the_limit_is_killed_and_the_run_fails(tmp_path):
    result = run_pytest(tmp_path, """
        import subprocess, sys

        GROW = "import time\\nkept = []\\nfor _ in range(200):\\n    kept.append(bytearray(10 << 20)); kept[-1][::4096] = b'x' * len(kept[-1][::4096]); time.sleep(0.02)"

        def test_child_runaway():
            assert subprocess.run([sys.executable, "-c", GROW]).returncode == -9
    """, limit_mb=300)
    output = result.stdout + result.stderr
    assert "memory guard: a child process" in output and "above the limit of 300 MB" in output and "killing it" in output
    assert "1 passed" in output  # the child was killed (-9) ...
    assert result.returncode != 0, output  # ... and the run still fails
