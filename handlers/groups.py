"""Group rules: act only on commands, style only a consenting author's photo, and let only the
author answer for their own photo."""

from __future__ import annotations

import logging

from inference import StyleRequest

from . import consent, guide, photos
from .context import Context
from .erasure import erase
from .events import ButtonEvent, Chat, CommandEvent, Membership, MembershipEvent, MessageRef, Person, PhotoEvent, PhotoRef
from .memory import HeldPhotos
from .registry import GROUP, Routes
from .replies import AnswerButton, Button, EditText, SendText
from .styles import parse_request, style_label
from .texts import t

log = logging.getLogger("darkroom.groups")
routes = Routes()
PREVIEW_WORDS = ("preview", "previews", "预览")


@routes.on_photo(GROUP)
async def photo_in_group(event: PhotoEvent, ctx: Context) -> None:
    """A photo in a group is only looked at when its caption starts with /style."""
    caption = event.caption.strip()
    words = caption.split(maxsplit=1)
    # Adapters strip the bot's own @name; "/style@other_bot" is for another bot.
    if not words or words[0].lower() != "/style":
        return
    if not await ctx.store.group_enabled(event.chat.pseudonym):
        return
    if event.from_someone_else:
        await ctx.send(event.chat, SendText(t("photo.forwarded_group", event.person.language), reply_to=event.message))
        return
    args = words[1] if len(words) > 1 else ""
    await request_styling(ctx, event.person, event.person, event.chat, event.photos, event.message, args)


async def style_replied_photo(event: CommandEvent, ctx: Context) -> None:
    """/style [NAME] in a group, in reply to a photo (in private chats it sets the favourite)."""
    if not await ctx.store.group_enabled(event.chat.pseudonym):
        return
    if not event.replied_photos or event.replied_author is None:
        await ctx.send(event.chat, SendText(t("group.reply_to_photo", event.person.language), reply_to=event.message))
        return
    if event.replied_from_someone_else:
        # The one who forwarded it is not its author: their yes cannot stand for the author's.
        await ctx.send(event.chat, SendText(t("photo.forwarded_group", event.person.language), reply_to=event.message))
        return
    await request_styling(
        ctx, event.person, event.replied_author, event.chat, event.replied_photos, event.replied_message, event.args
    )


async def request_styling(
    ctx: Context,
    requester: Person,
    author: Person,
    chat: Chat,
    photo_refs: tuple[PhotoRef, ...],
    message: MessageRef | None,
    args: str,
) -> None:
    preferences = await ctx.store.preferences(author.pseudonym)
    # "/style preview": the preview sheet, asked for (in groups the sheet is never offered
    # unasked: it shows the photo in every style to everyone there). Its picker follows it.
    previews = args.strip().lower() in PREVIEW_WORDS
    request = parse_request(args, ctx.catalogue, preferences) if args.strip() and not previews else None
    if request is None and not previews:
        fallback = preferences.style or ctx.settings.default_style or ctx.catalogue.default.key
        style = ctx.catalogue.find(fallback) or ctx.catalogue.default
        request = StyleRequest(style.key, preferences.strength, preferences.keep_colours)
    held = HeldPhotos(
        person=author,
        chat=chat,
        photos=photo_refs[: ctx.settings.album_limit],
        message=message,
        request=request,
        requester=requester,
    )
    if not await consent.has_consent(ctx, author):
        # Only the author's own press of "I agree" can let this photo through.
        held.resume = ask_author_then_queue
        ctx.memory.hold(ctx.memory.awaiting_consent, held)
        held.prompt = await consent.ask(ctx, author, chat, reply_to=message, lead=t("group.author_consent", author.language))
        return
    await ask_author_then_queue(ctx, held)


async def ask_author_then_queue(ctx: Context, held: HeldPhotos) -> None:
    """The author has consented. In a group the author is always asked first, whoever made the
    request: to agree to this styling, and to confirm that everyone pictured agreed."""
    author, requester = held.person, held.requester or held.person
    if not held.confirmed:
        ask = ctx.memory.add_group_request(author, requester, held)
        language = author.language
        buttons = (
            (
                Button(t("group.author_yes", language), f"gconf:{ask.token}:y", ("yes", "可以")),
                Button(t("group.author_no", language), f"gconf:{ask.token}:n", ("no", "不行")),
            ),
        )
        await ctx.send(held.chat, SendText(t("group.ask_author", language), buttons, reply_to=held.message))
        return
    await queue_styling_or_previews(ctx, held)


async def queue_styling_or_previews(ctx: Context, held: HeldPhotos) -> None:
    if held.request is None:  # "/style preview": the sheet, then the author's choice on it
        ctx.memory.hold(ctx.memory.awaiting_style, held)
        await photos.offer_previews(ctx, held)
        return
    await photos.queue_styling(ctx, held)


@routes.button("gconf")
async def author_answer(event: ButtonEvent, ctx: Context) -> None:
    """Only the photo's author can answer; anyone else's press changes nothing."""
    _, token, answer = (event.data.split(":") + ["", ""])[:3]
    request = ctx.memory.take_group_request(token)
    language = event.person.language
    if request is None:
        await ctx.send(event.chat, AnswerButton(event.answer_handle, t("group.expired", language)))
        return
    if event.person.pseudonym != request.author.pseudonym:
        await ctx.send(event.chat, AnswerButton(event.answer_handle, t("group.only_author", language), alert=True))
        return
    del ctx.memory.group_requests[token]
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    if answer != "y":
        if event.message is not None:
            await ctx.send(event.chat, EditText(event.message, t("group.author_declined", language)))
        return
    request.held.requester = request.author  # the author said yes: no need to ask again
    request.held.confirmed = True
    if not await consent.has_consent(ctx, request.author):
        request.held.resume = ask_author_then_queue
        ctx.memory.hold(ctx.memory.awaiting_consent, request.held)
        await consent.ask(ctx, request.author, event.chat, reply_to=request.held.message)
        return
    if event.message is not None:
        style = request.held.request.style if request.held.request is not None else None  # None: previews asked
        chosen = t("styles.chosen", language, style=style_label(ctx, style, language)) if style else t("group.previews", language)
        await ctx.send(event.chat, EditText(event.message, chosen))
    await queue_styling_or_previews(ctx, request.held)


async def switch(event: CommandEvent, ctx: Context) -> None:
    """/darkroom_on and /darkroom_off in a group (in private chats: guide.help_in_group)."""
    language = event.person.language
    if not await ctx.platform.is_admin(event.chat, event.person):
        await ctx.send(event.chat, SendText(t("group.admins_only", language), reply_to=event.message))
        return
    enabled = event.name == "darkroom_on"
    await ctx.store.set_group_enabled(event.chat.pseudonym, enabled)
    await ctx.send(event.chat, SendText(t("group.on" if enabled else "group.off", language)))


@routes.on_membership
async def membership(event: MembershipEvent, ctx: Context) -> None:
    if event.change is Membership.BOT_REMOVED:
        rows = await ctx.store.delete_group(event.chat.pseudonym)
        held = ctx.memory.forget_chat(event.chat.pseudonym)
        log.info("removed from a group: deleted %d rows, released %d held items", rows, held)
    elif event.change is Membership.UNSUBSCRIBED:
        await erase(ctx, event.person)  # the person left: keep nothing
    elif event.change is Membership.SUBSCRIBED:
        await guide.welcome(ctx, event.person, event.chat)
