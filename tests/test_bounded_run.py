"""The test run's own memory is bounded: the fakes stop recording a runaway and fail its test
with one clear line."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import ALICE, TOKEN
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import FakeWeChatApi


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
