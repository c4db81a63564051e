"""Consent first: the notice, the three answers, and what a held photo does after "I agree"."""

from __future__ import annotations

import logging
import time

from . import photos
from .context import Context, ConversationSettings
from .events import ButtonEvent, Chat, CommandEvent, MessageRef, Person
from .ports import ConsentRecord
from .registry import Routes
from .replies import AnswerButton, Button, EditText, SendText
from .texts import consent_notice, notice_version, t, text_sha256

log = logging.getLogger("darkroom.consent")
routes = Routes()


def current_version(settings: ConversationSettings) -> str:
    return notice_version(settings.min_age, settings.input_ttl, settings.operator)


def notice(settings: ConversationSettings, language: str, question: bool = True) -> str:
    text = consent_notice(language, settings.min_age, settings.input_ttl, settings.operator, question)
    if settings.webapp_url:
        # The two ways and what each sends, in the notice itself (and so in /privacy). Not part of
        # the version: the on-device way needs no consent, since no photo reaches the server.
        modes = t("webapp.notice", language)
        head, _, ask = text.rpartition("\n\n")
        text = f"{head}\n\n{modes}\n\n{ask}" if question else f"{text}\n\n{modes}"
    return text


async def has_consent(ctx: Context, person: Person) -> bool:
    """True only for consent given to the notice as it reads now."""
    record = await ctx.store.consent(person.pseudonym)
    return record is not None and record.version == current_version(ctx.settings)


def consent_buttons(settings: ConversationSettings, language: str):
    age = settings.min_age
    zh = language == "zh"  # the first typed answer is the one shown where buttons are typed
    agree = ("同意", "agree", "yes", "是", "1") if zh else ("agree", "同意", "yes", "是", "1")
    under = ("未满", "under", "2") if zh else ("under", "未满", "2")
    no = ("不同意", "no", "否", "3") if zh else ("no", "不同意", "否", "3")
    return (
        (Button(t("consent.agree", language, min_age=age), "consent:agree", agree),),
        *on_device_row(settings, language),
        (
            Button(t("consent.under_age", language, min_age=age), "consent:under", under),
            Button(t("consent.decline", language), "consent:no", no),
        ),
    )


def on_device_row(settings: ConversationSettings, language: str):
    """The second choice beside "I agree": style on the phone, nothing sent (needs no consent,
    since no photo reaches us). Empty when the operator has not set DARKROOM_WEBAPP_URL."""
    if not settings.webapp_url:
        return ()
    return ((Button(t("webapp.button", language), "webapp", web_app=settings.webapp_url),),)


async def ask(ctx: Context, person: Person, chat: Chat, reply_to: MessageRef | None = None, lead: str = "") -> MessageRef | None:
    """Send the consent notice (with a short lead-in when a photo is waiting)."""
    text = notice(ctx.settings, person.language)
    if lead:
        text = f"{lead}\n\n{text}"
    return await ctx.send(chat, SendText(text, consent_buttons(ctx.settings, person.language), reply_to=reply_to))


@routes.command("start")
async def start(event: CommandEvent, ctx: Context) -> None:
    language = event.person.language
    if not event.chat.private:
        await ctx.send(event.chat, SendText(t("help.group", language)))
        return
    if await has_consent(ctx, event.person):
        await ctx.send(
            event.chat,
            SendText(t("consent.already", language) + "\n\n" + t("help", language), on_device_row(ctx.settings, language)),
        )
        return
    await ask(ctx, event.person, event.chat)


@routes.button("consent")
async def answer(event: ButtonEvent, ctx: Context) -> None:
    """A press records (or refuses) consent for the person who pressed, and no one else."""
    person, language = event.person, event.person.language
    choice = event.data.partition(":")[2]
    if choice == "agree":
        version = current_version(ctx.settings)
        shown = notice(ctx.settings, language)
        await ctx.store.record_consent(
            person.pseudonym,
            ConsentRecord(version=version, text_sha256=text_sha256(shown), language=language, given_at=int(time.time())),
        )
        log.info("consent recorded (version %s)", version)
        held = ctx.memory.take(ctx.memory.awaiting_consent, person.pseudonym)
        if held is not None and held.chat.pseudonym != event.chat.pseudonym:
            held = None  # a photo waiting in another chat waits for an answer there
        await ctx.send(event.chat, AnswerButton(event.answer_handle, t("consent.thanks", language)))
        if event.chat.private and event.message is not None:
            await ctx.send(
                event.chat,
                EditText(event.message, shown + "\n\n" + t("consent.recorded", language, version=version)),
            )
        if held is not None:
            await photos.continue_after_consent(ctx, held)
        elif event.chat.private:
            await ctx.send(event.chat, SendText(t("consent.thanks", language)))
        return

    if choice == "under":
        # A minor's data must not be kept: drop anything an earlier answer may have stored.
        await ctx.store.delete_person(person.pseudonym)
        ctx.queue.cancel_owner(person.pseudonym)
        ctx.memory.forget(person.pseudonym)
    # "under" or "no": drop whatever waited, store nothing.
    dropped = ctx.memory.take(ctx.memory.awaiting_consent, person.pseudonym)
    if dropped is not None and dropped.chat.pseudonym != event.chat.pseudonym:
        ctx.memory.hold(ctx.memory.awaiting_consent, dropped)  # not this chat's question
    ctx.memory.take(ctx.memory.style_pictures, person.pseudonym)
    key = "consent.under_age_refused" if choice == "under" else "consent.declined"
    text = t(key, language, min_age=ctx.settings.min_age)
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    await ctx.edit_or_send(event.chat, event.message if event.chat.private else None, text)
