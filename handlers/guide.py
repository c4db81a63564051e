"""Guidance: help, the welcome, free text, and the answer to anything we do not understand
(help, not silence)."""

from __future__ import annotations

from . import consent, photos
from .context import Context
from .events import Chat, CommandEvent, Person, TextEvent
from .registry import PRIVATE, Routes
from .replies import SendText
from .texts import t

routes = Routes()


async def help_private(event: CommandEvent, ctx: Context) -> None:
    text = t("help", event.person.language)
    if ctx.settings.webapp_url:
        text += "\n\n" + t("webapp.link", event.person.language, url=ctx.settings.webapp_url)
    await ctx.send(event.chat, SendText(text))


async def help_in_group(event: CommandEvent, ctx: Context) -> None:
    """In a group the bot only says how it is used there (/start, /help, and what is private)."""
    await ctx.send(event.chat, SendText(t("help.group", event.person.language)))


async def welcome(ctx: Context, person: Person, chat: Chat) -> None:
    """A new follower (WeChat subscribe): the consent notice, or a welcome back."""
    if await consent.has_consent(ctx, person):
        await ctx.send(chat, SendText(t("consent.already", person.language)))
    else:
        await consent.ask(ctx, person, chat)


async def unknown_private(event: CommandEvent, ctx: Context) -> None:
    language = event.person.language
    await ctx.send(event.chat, SendText(t("unknown_command", language) + "\n\n" + t("help", language)))


async def unknown_in_group(event: CommandEvent, ctx: Context) -> None:
    language = event.person.language
    await ctx.send(event.chat, SendText(t("unknown_command", language) + "\n\n" + t("help.group", language)))


@routes.on_text(PRIVATE)  # in groups the bot acts on commands only
async def on_text(event: TextEvent, ctx: Context) -> None:
    """Free text in a private chat (typed choices were already turned into presses)."""
    if not await consent.has_consent(ctx, event.person):
        await consent.ask(ctx, event.person, event.chat)
        return
    if await photos.typed_style(event, ctx):
        return
    await ctx.send(event.chat, SendText(t("help", event.person.language)))
