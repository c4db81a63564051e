"""Help, the welcome, and the answer to anything we do not understand (help, not silence)."""

from __future__ import annotations

from . import consent, styles
from .context import Context
from .events import Chat, CommandEvent, Person, TextEvent
from .registry import Routes
from .replies import SendText
from .texts import t

routes = Routes()


@routes.command("help")
async def help_command(event: CommandEvent, ctx: Context) -> None:
    key = "help" if event.chat.private else "help.group"
    text = t(key, event.person.language)
    if event.chat.private and ctx.settings.webapp_url:
        text += "\n\n" + t("webapp.link", event.person.language, url=ctx.settings.webapp_url)
    await ctx.send(event.chat, SendText(text))


async def welcome(ctx: Context, person: Person, chat: Chat) -> None:
    """A new follower (WeChat subscribe): the consent notice, or a welcome back."""
    if await consent.has_consent(ctx, person):
        await ctx.send(chat, SendText(t("consent.already", person.language)))
    else:
        await consent.ask(ctx, person, chat)


async def unknown_command(event: CommandEvent, ctx: Context) -> None:
    language = event.person.language
    key = "help" if event.chat.private else "help.group"
    await ctx.send(event.chat, SendText(t("unknown_command", language) + "\n\n" + t(key, language)))


@routes.on_text
async def on_text(event: TextEvent, ctx: Context) -> None:
    """Free text in a private chat (typed choices were already turned into presses)."""
    if not event.chat.private:
        return  # in groups the bot acts on commands only
    if not await consent.has_consent(ctx, event.person):
        await consent.ask(ctx, event.person, event.chat)
        return
    if await styles.typed_style(event, ctx):
        return
    await ctx.send(event.chat, SendText(t("help", event.person.language)))
