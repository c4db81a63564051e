"""Every style's every name, in both languages, read right as a caption. "watercolour" used to be
read as "water" plus "keep colours" (the keep-colours words matched inside the name), so the
person got the picker instead of their style."""

from __future__ import annotations

import pytest

from handlers.replies import SendPhotos
from handlers.styles import parse_request
from inference.catalogue import load_catalogue

CATALOGUE = load_catalogue()
# (what the person types, their language, the style it names)
NAMES = [
    (name, "zh" if name == style.name_zh else "en", style)
    for style in CATALOGUE.styles
    for name in dict.fromkeys((style.key, style.name, style.name_zh))
]
OPTIONS = {"en": (" 0.6 keep colours", " 60% keep my colors"), "zh": (" 60% 保留颜色", "60%保留色彩")}


@pytest.mark.parametrize(("name", "language", "style"), NAMES, ids=[n for n, _, _ in NAMES])
def test_each_name_alone_and_with_options_names_its_style(name, language, style):
    for typed in (name, name.upper(), name.lower(), f"/style {name}"):
        request = parse_request(typed, CATALOGUE)
        assert request is not None and (request.style, request.keep_colours, request.strength) == (style.key, False, 1.0), typed
    for options in OPTIONS[language]:
        request = parse_request(name + options, CATALOGUE)
        assert request is not None and (request.style, request.keep_colours, request.strength) == (style.key, True, 0.6), name + options


def test_keep_words_alone_name_no_style():
    for typed in ("keep colours", "colours", "保留颜色", "keep"):
        assert parse_request(typed, CATALOGUE) is None


async def test_each_name_as_a_photo_caption_styles_that_style_without_the_picker(harness, small_portrait):
    for i, (name, language, style) in enumerate(NAMES):
        person = harness.person(f"p{i}", language)  # one each: the hourly limit is per person
        await harness.agree(person)
        pickers = sum(d.startswith("pick:") for d in harness.platform.button_data())
        await harness.photo(person, small_portrait, caption=name)
        await harness.idle()
        reply = harness.platform.last(SendPhotos)
        assert style.display_name(language) in reply.photos[0].caption, (name, reply.photos[0].caption)
        assert sum(d.startswith("pick:") for d in harness.platform.button_data()) == pickers, f"{name!r} got the picker"
