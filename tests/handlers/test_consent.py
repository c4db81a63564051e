"""Consent first: the notice, the three answers, versions, and the photo that waits."""

from __future__ import annotations

import dataclasses

import pytest

from handlers import consent
from handlers.replies import EditText, SendPhotos, SendText
from handlers.texts import notice_version


async def test_start_without_consent_shows_notice_with_three_answers(harness):
    alice = harness.person()
    await harness.command(alice, "/start")
    notice = harness.platform.last(SendText)
    assert "Do you agree?" in notice.text
    assert "16 or older" in notice.text
    assert "/delete_my_data" in notice.text
    assert "never used for training" in notice.text
    version = consent.current_version(harness.ctx.settings)
    assert harness.platform.button_data() == [f"consent:{c}:{version}:en" for c in ("agree", "under", "no")]


async def test_photo_before_consent_is_not_downloaded_and_waits(harness, small_portrait):
    alice = harness.person()
    await harness.photo(alice, small_portrait)
    assert harness.platform.fetched == []
    assert "Do you agree?" in harness.platform.last(SendText).text
    assert alice.pseudonym in harness.ctx.memory.awaiting_consent


async def test_agree_records_version_and_text_hash_then_styles_waiting_photo(harness, small_portrait):
    alice = harness.person()
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.agree(alice)
    await harness.idle()
    record = await harness.storage.consent(alice.pseudonym)
    assert record.version == consent.current_version(harness.ctx.settings)
    assert record.text_sha256 == consent.text_sha256(consent.notice(harness.ctx.settings, "en"))
    photo = harness.platform.last(SendPhotos)
    assert "Ink wash" in photo.photos[0].caption
    assert len(harness.platform.fetched) == 1
    assert alice.pseudonym not in harness.ctx.memory.awaiting_consent


async def test_no_thanks_drops_the_photo_and_stores_nothing(harness, small_portrait):
    alice = harness.person()
    await harness.photo(alice, small_portrait)
    await harness.press(alice, harness.consent_data("no", alice))
    assert harness.platform.fetched == []
    assert alice.pseudonym not in harness.ctx.memory.awaiting_consent
    assert await harness.storage.rows_of(alice.pseudonym) == 0
    assert "kept nothing" in harness.platform.last(EditText).text


async def test_under_age_is_refused_politely_and_earlier_consent_is_erased(harness):
    alice = harness.person()
    await harness.agree(alice)
    assert await harness.storage.rows_of(alice.pseudonym) > 0
    await harness.press(alice, harness.consent_data("under", alice))
    assert await harness.storage.rows_of(alice.pseudonym) == 0
    assert "only for people aged 16" in harness.platform.last(EditText).text


async def test_changed_notice_asks_again_at_next_photo(harness, small_portrait):
    alice = harness.person()
    await harness.agree(alice)
    assert await consent.has_consent(harness.ctx, alice)
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, input_ttl=60)
    assert not await consent.has_consent(harness.ctx, alice)
    await harness.photo(alice, small_portrait, caption="ink")
    assert harness.platform.fetched == []
    assert "60 seconds" in harness.platform.last(SendText).text


@pytest.mark.parametrize(
    "field,value", [("min_age", 18), ("input_ttl", 30), ("operator", "Ana, ana@example.org"), ("file_ttl", 60)]
)
def test_notice_version_follows_every_value_it_states(field, value):
    base = {"min_age": 16, "input_ttl": 0, "operator": "", "file_ttl": 0}
    changed = {**base, field: value}
    assert notice_version(**base) != notice_version(**changed)


async def test_chinese_speakers_get_the_chinese_notice(harness):
    bob = harness.person("bob", language="zh")
    await harness.command(bob, "/start")
    notice = harness.platform.last(SendText)
    assert "你同意吗" in notice.text
    assert notice.buttons[0][0].label.startswith("我同意")


async def test_consent_can_be_given_by_typing(harness):
    alice = harness.person()
    await harness.command(alice, "/start")
    await harness.text(alice, "Agree")
    assert await consent.has_consent(harness.ctx, alice)


async def test_operator_is_named_in_the_notice(harness):
    harness.ctx.settings = dataclasses.replace(harness.ctx.settings, operator="Darkroom Café, privacy@example.org")
    await harness.command(harness.person(), "/start")
    assert "run by Darkroom Café, privacy@example.org" in harness.platform.last(SendText).text
