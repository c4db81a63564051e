"""Styles, favourites, typed choices, /privacy, /my_data, /delete_my_data and /revoke."""

from __future__ import annotations

import json

import pytest

from handlers.ports import Preferences
from handlers.replies import EditText, SendDocument, SendPhotos, SendText
from handlers.styles import parse_request


async def consented(harness, name="alice", language="en"):
    person = harness.person(name, language)
    await harness.agree(person)
    return person


async def test_styles_lists_every_style_with_description_and_licence(harness):
    alice = harness.person()
    await harness.command(alice, "/styles")
    text = harness.platform.last(SendText).text
    for style in harness.ctx.catalogue.styles:
        assert style.name in text and style.description in text
    assert "Apache-2.0" in text
    assert "Faithful styles" in text


async def test_styles_in_chinese(harness):
    bob = harness.person("bob", "zh")
    await harness.command(bob, "/styles")
    text = harness.platform.last(SendText).text
    assert "水墨" in text and "铅笔素描" in text


async def test_unknown_style_name_is_answered_kindly(harness):
    alice = await consented(harness)
    await harness.command(alice, "/style vaporwave")
    assert "don't know the style “vaporwave”" in harness.platform.last(SendText).text


async def test_style_alone_offers_favourite_picker_including_ask_each_time(harness):
    alice = await consented(harness)
    await harness.command(alice, "/style")
    picker = harness.platform.last(SendText)
    data = [b.data for row in picker.buttons for b in row]
    assert "default:impressionist" in data and "default:-" in data
    await harness.press(alice, "default:toon")
    assert (await harness.storage.preferences(alice.pseudonym)).style == "toon"
    await harness.press(alice, "default:-")
    assert (await harness.storage.preferences(alice.pseudonym)).style is None


async def test_more_pages_through_every_style(harness):
    alice = await consented(harness)
    await harness.command(alice, "/style")
    seen = set()
    for page in (1, 2, 0):
        await harness.press(alice, f"page:default:{page}")
        edit = harness.platform.last(EditText)
        seen |= {b.data for row in edit.buttons for b in row}
    assert {f"default:{s.key}" for s in harness.ctx.catalogue.styles} <= seen


async def test_style_can_be_chosen_by_typing_number_or_name(harness, small_portrait):
    alice = await consented(harness)
    await harness.photo(alice, small_portrait)
    await harness.text(alice, "3")  # the third style
    await harness.idle()
    assert "Ink wash" in harness.platform.last(SendPhotos).photos[0].caption
    await harness.photo(alice, small_portrait)
    await harness.text(alice, "铅笔素描")
    await harness.idle()
    assert "Pencil sketch" in harness.platform.last(SendPhotos).photos[0].caption


@pytest.mark.parametrize(
    "text,style,strength,keep",
    [
        ("ink", "ink", 1.0, False),
        ("/style ink", "ink", 1.0, False),
        ("/style@darkroom_bot Ink Wash 0.6", "ink", 0.6, False),
        ("oil 60% keep colours", "oil", 0.6, True),
        ("水墨 0.3 保留颜色", "ink", 0.3, True),
        ("Old-master oil", "oil", 1.0, False),
        ("keep colors pencil", "pencil", 1.0, True),
    ],
)
def test_parse_request(engine, text, style, strength, keep):
    request = parse_request(text, engine.catalogue, Preferences())
    assert (request.style, request.strength, request.keep_colours) == (style, strength, keep)


@pytest.mark.parametrize("text", ["", "hello there", "0.5", "/styles", "/style_from"])
def test_parse_request_without_a_style_is_none(engine, text):
    assert parse_request(text, engine.catalogue, Preferences()) is None


async def test_delete_my_data_without_consent_works_and_says_nothing_was_there(harness):
    stranger = harness.person("stranger")
    await harness.command(stranger, "/delete_my_data")
    text = harness.platform.last(SendText).text
    assert "consent records: 0" in text and "preferences: 0" in text and "jobs cancelled: 0" in text


async def test_delete_my_data_counts_what_it_removed_and_is_harmless_twice(harness, small_portrait):
    alice = await consented(harness)
    await harness.command(alice, "/style ink")
    await harness.photo(alice, small_portrait, caption="/style_from")  # a held style picture
    await harness.command(alice, "/delete_my_data")
    text = harness.platform.last(SendText).text
    assert "consent records: 2" in text  # the current record and its history entry
    assert "preferences: 1" in text
    assert "photos held in memory released: 1" in text
    assert await harness.storage.rows_of(alice.pseudonym) == 0
    await harness.command(alice, "/delete_my_data")
    again = harness.platform.last(SendText).text
    assert "consent records: 0" in again and "preferences: 0" in again


async def test_delete_my_data_cancels_waiting_jobs(harness, small_portrait):
    alice = await consented(harness)
    others = [await consented(harness, f"o{i}") for i in range(3)]
    for person in others:  # fill both workers and the line
        await harness.photo(person, small_portrait, caption="ink")
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.command(alice, "/delete_my_data")
    receipt = harness.platform.last(SendText).text
    await harness.idle()
    assert "jobs cancelled: 2" in receipt
    photos_for_alice = [s for s in harness.platform.sent if isinstance(s.reply, SendPhotos) and s.chat == harness.private(alice).address]
    assert photos_for_alice == []


async def test_revoke_withdraws_consent_with_its_own_words(harness):
    alice = await consented(harness)
    await harness.command(alice, "/revoke")
    assert harness.platform.last(SendText).text.startswith("Consent withdrawn.")
    assert await harness.storage.consent(alice.pseudonym) is None


async def test_privacy_is_generated_from_configuration_and_shows_what_is_held(harness):
    alice = await consented(harness)
    await harness.command(alice, "/style ink")
    await harness.command(alice, "/privacy")
    text = harness.platform.last(SendText).text
    assert "released right after the reply" in text
    assert "favourite style ink" in text
    assert "multistyle26" in text and "0a2a0c9436a935cd" in text
    assert "Software: Darkroom" in text


async def test_my_data_sends_everything_held_as_json(harness):
    alice = await consented(harness)
    await harness.command(alice, "/style oil 0.7")
    await harness.command(alice, "/my_data")
    document = harness.platform.last(SendDocument)
    data = json.loads(document.data)
    assert data["pseudonym"] == alice.pseudonym
    assert data["consent"]["valid_now"] is True
    assert len(data["consent_history"]) == 1
    assert data["preferences"] == {"style": "oil", "strength": 0.7, "keep_colours": False}


async def test_unknown_command_gets_help(harness):
    alice = harness.person()
    await harness.command(alice, "/frobnicate")
    text = harness.platform.last(SendText).text
    assert "don't know that command" in text and "/delete_my_data" in text


async def test_free_text_gets_help_not_silence(harness):
    alice = await consented(harness)
    await harness.text(alice, "hello?")
    assert "Send me a selfie" in harness.platform.last(SendText).text


def test_software_version_names_the_commit_in_a_checkout():
    from pathlib import Path

    from bot.app import software_version
    from inference import __version__

    version = software_version()
    assert version.startswith(__version__)
    if (Path(__file__).resolve().parents[2] / ".git" / "HEAD").exists():
        assert "commit " in version
