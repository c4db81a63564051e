"""Styles: the list, the picker, the person's favourite, and reading a style from words.

What a chosen style does for a photo waiting for one is the photo's business (handlers/photos.py).
"""

from __future__ import annotations

import re

from inference import PICTURE_STYLE, Catalogue, Style, StyleRequest

from .context import Context
from .events import ButtonEvent, Chat, CommandEvent, Person
from .ports import Preferences
from .registry import Routes
from .replies import AnswerButton, Button, EditText, Keyboard, SendText
from .texts import t

routes = Routes()

PAGE_SIZE = 6
PER_ROW = 3
PURPOSES = ("pick", "again", "default")

_COMMAND = re.compile(r"^/style(?:@\w+)?(?=\s|$)", re.IGNORECASE)
# Not inside a Latin word or number; next to Chinese is fine ("水墨60%保留颜色" has no spaces).
_STRENGTH = re.compile(r"(?<![A-Za-z0-9_.])(0(?:\.\d+)?|1(?:\.0+)?|\.\d+|\d{1,3}\s*%)(?![A-Za-z0-9_.])")
# Whole words only: inside "watercolour", "colour" is part of the style's name, not a wish.
_KEEP = re.compile(r"(?<![a-z])(?:keep\s*(?:my\s*)?colou?rs?|keep|colou?rs?)(?![a-z])|保留颜色|保留色彩|原色", re.IGNORECASE)


def parse_request(text: str, catalogue: Catalogue, preferences: Preferences | None = None) -> StyleRequest | None:
    """Read "oil", "/style ink 0.6 keep colours" or "水墨 60% 保留颜色" as a StyleRequest.

    Returns None when the words name no style (the caller then asks). Strength and colour
    keeping fall back to the person's preferences.
    """
    preferences = preferences or Preferences()
    words = _COMMAND.sub("", text.strip(), count=1)
    strength = preferences.strength
    match = _STRENGTH.search(words)
    if match:
        raw = match.group(1).replace(" ", "")
        strength = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        strength = min(1.0, max(0.0, strength))
        words = words[: match.start()] + " " + words[match.end() :]
    keep = preferences.keep_colours
    # The words as a whole first: a style's own name may hold a keep word (a custom "Colour pop").
    style = catalogue.find(" ".join(words.split())) if words.strip() else None
    if style is None and _KEEP.search(words):
        keep = True
        name = " ".join(_KEEP.sub(" ", words).split())
        style = catalogue.find(name) if name else None
    if style is None:
        return None
    return StyleRequest(style=style.key, strength=strength, keep_colours=keep)


def picker(ctx: Context, language: str, purpose: str, page: int = 0, numbered: bool = False) -> Keyboard:
    """Style buttons a few per row, with "More…" paging; every style can also be typed by its
    number or name. Without buttons (WeChat) the whole list is offered at once. ``numbered``:
    under a preview sheet, every style at once, each button with the number of its tile (a
    photo's buttons cannot page: paging edits a text)."""
    styles = ctx.catalogue.styles
    if not ctx.platform.has_buttons or numbered:
        page_styles, page, pages = list(enumerate(styles)), 0, 1
    else:
        pages = (len(styles) + PAGE_SIZE - 1) // PAGE_SIZE
        page = page % pages
        page_styles = list(enumerate(styles))[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    rows: list[tuple[Button, ...]] = []
    for start in range(0, len(page_styles), PER_ROW):
        row = page_styles[start : start + PER_ROW]
        rows.append(tuple(_style_button(i, s, language, purpose, numbered and ctx.platform.has_buttons) for i, s in row))
    nav: list[Button] = []
    if pages > 1:
        label = t("styles.more", language) if page + 1 < pages else t("styles.fewer", language)
        nav.append(Button(label, f"page:{purpose}:{(page + 1) % pages}", ("more", "更多")))
    if purpose == "default":
        nav.append(Button(t("styles.always_ask", language), "default:-", ("ask", "每次问我")))
    if nav:
        rows.append(tuple(nav))
    return tuple(rows)


def _style_button(index: int, style: Style, language: str, purpose: str, numbered: bool = False) -> Button:
    name = style.display_name(language)
    return Button(
        f"{index + 1} · {name}" if numbered else name,
        f"{purpose}:{style.key}",
        (str(index + 1), style.key, style.name, style.name_zh),
    )


def style_label(ctx: Context, key: str, language: str) -> str:
    if key == PICTURE_STYLE:
        return t("photo.your_picture", language)
    style = ctx.catalogue.find(key)
    return style.display_name(language) if style else key


def styles_text(ctx: Context, language: str) -> str:
    neural = [s for s in ctx.catalogue.styles if s.neural]
    faithful = [s for s in ctx.catalogue.styles if not s.neural]
    lines = [t("styles.header", language), "", t("styles.neural_header", language)]
    index = {s.key: i + 1 for i, s in enumerate(ctx.catalogue.styles)}
    lines += [f"{index[s.key]}. {s.display_name(language)} — {s.display_description(language)}" for s in neural]
    lines += ["", t("styles.faithful_header", language)]
    lines += [f"{index[s.key]}. {s.display_name(language)} — {s.display_description(language)}" for s in faithful]
    licences = sorted({f"{s.model.key} ({s.licence.split(' (')[0]})" for s in neural if s.model})
    lines += ["", t("styles.licence_line", language, models="; ".join(licences))]
    return "\n".join(lines)


async def list_styles(event: CommandEvent, ctx: Context) -> None:
    await ctx.send(event.chat, SendText(styles_text(ctx, event.person.language)))


async def set_favourite(ctx: Context, person: Person, chat: Chat, request: StyleRequest | None) -> None:
    language = person.language
    current = await ctx.store.preferences(person.pseudonym)
    if request is None:
        await ctx.store.set_preferences(person.pseudonym, Preferences(None, current.strength, current.keep_colours))
        await ctx.send(chat, SendText(t("styles.default_cleared", language)))
        return
    await ctx.store.set_preferences(
        person.pseudonym, Preferences(request.style, request.strength, request.keep_colours)
    )
    await ctx.send(chat, SendText(t("styles.default_set", language, style=style_label(ctx, request.style, language))))


async def favourite_command(event: CommandEvent, ctx: Context) -> None:
    """/style [NAME] in a private chat: set the favourite, or offer the picker (in groups /style
    styles a photo: groups.style_replied_photo)."""
    language = event.person.language
    if not event.args.strip():
        await ctx.send(event.chat, SendText(t("styles.pick_default", language), picker(ctx, language, "default")))
        return
    preferences = await ctx.store.preferences(event.person.pseudonym)
    request = parse_request(event.args, ctx.catalogue, preferences)
    if request is None:
        await ctx.send(event.chat, SendText(t("styles.unknown", language, name=event.args.strip()[:40])))
        return
    await set_favourite(ctx, event.person, event.chat, request)


@routes.button("page")
async def turn_page(event: ButtonEvent, ctx: Context) -> None:
    _, purpose, page = (event.data.split(":") + ["", ""])[:3]
    language = event.person.language
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    if purpose not in PURPOSES or not page.isdigit() or event.message is None:
        return
    prompt = {"default": "styles.pick_default"}.get(purpose, "styles.pick")
    await ctx.send(event.chat, EditText(event.message, t(prompt, language), picker(ctx, language, purpose, int(page))))


@routes.button("default")
async def choose_favourite(event: ButtonEvent, ctx: Context) -> None:
    key = event.data.partition(":")[2]
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    if event.message is not None and event.chat.private:
        await ctx.send(event.chat, EditText(event.message, t("styles.pick_default", event.person.language)))
    if key == "-":
        await set_favourite(ctx, event.person, event.chat, None)
        return
    style = ctx.catalogue.find(key)
    if style is None:
        return
    current = await ctx.store.preferences(event.person.pseudonym)
    await set_favourite(ctx, event.person, event.chat, StyleRequest(style.key, current.strength, current.keep_colours))
