"""Consent first: the notice, the three answers, and what a held photo does after "I agree"."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from .context import Context, ConversationSettings
from .erasure import erase, receipt_for, stored_anything
from .events import ButtonEvent, Chat, CommandEvent, MessageRef, Person
from .ports import ConsentRecord
from .registry import Routes
from .replies import AnswerButton, Button, EditText, SendText
from .texts import LANGUAGES, consent_notice, notice_version, t, text_sha256

log = logging.getLogger("darkroom.consent")
routes = Routes()


def current_version(settings: ConversationSettings) -> str:
    return notice_version(settings.min_age, settings.input_ttl, settings.operator, settings.file_ttl)


def notice(settings: ConversationSettings, language: str, question: bool = True) -> str:
    text = consent_notice(language, settings.min_age, settings.input_ttl, settings.operator, question, settings.file_ttl)
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


def answer_data(choice: str, version: str, language: str) -> str:
    """What a consent button carries: the answer, and the version and language of the notice it
    answers, so that a press is recorded against exactly the text that was shown."""
    return f"consent:{choice}:{version}:{language}"


def consent_buttons(settings: ConversationSettings, language: str):
    age = settings.min_age
    version = current_version(settings)
    zh = language == "zh"  # the first typed answer is the one shown where buttons are typed
    agree = ("同意", "agree", "yes", "是", "1") if zh else ("agree", "同意", "yes", "是", "1")
    under = ("未满", "under", "2") if zh else ("under", "未满", "2")
    no = ("不同意", "no", "否", "3") if zh else ("no", "不同意", "否", "3")
    return (
        (Button(t("consent.agree", language, min_age=age), answer_data("agree", version, language), agree),),
        *on_device_row(settings, language),
        (
            Button(t("consent.under_age", language, min_age=age), answer_data("under", version, language), under),
            Button(t("consent.decline", language), answer_data("no", version, language), no),
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


async def start(event: CommandEvent, ctx: Context) -> None:
    """/start in a private chat: the notice, or a welcome back (in groups: guide.help_in_group)."""
    language = event.person.language
    if await has_consent(ctx, event.person):
        await ctx.send(
            event.chat,
            SendText(t("consent.already", language) + "\n\n" + t("help", language), on_device_row(ctx.settings, language)),
        )
        return
    await ask(ctx, event.person, event.chat)


@routes.button("consent")
async def answer(event: ButtonEvent, ctx: Context) -> None:
    """A press (or typed answer) speaks for the person who pressed, and no one else."""
    _, choice, version, shown = (event.data.split(":") + ["", "", ""])[:4]
    if choice == "agree":
        await agree(event, ctx, version, shown if shown in LANGUAGES else event.person.language)
    elif choice in ("no", "under"):
        await refuse(event, ctx, choice)
    else:
        await ctx.send(event.chat, AnswerButton(event.answer_handle))


async def agree(event: ButtonEvent, ctx: Context, version: str, shown_language: str) -> None:
    """Record consent to the notice that was shown, in the language it was shown in, if its
    terms still hold; the conversation then goes on in the language the person just used."""
    person, language = event.person, event.person.language
    current = current_version(ctx.settings)
    if version != current:
        # The terms changed since this notice was shown (input TTL, age, operator, wording):
        # agreeing to the old text is not consent to the new one. Show the new one instead.
        lead = t("consent.changed", language)
        await ctx.send(event.chat, AnswerButton(event.answer_handle))
        if event.chat.private and event.message is not None and ctx.platform.can_edit:
            text = f"{lead}\n\n{notice(ctx.settings, language)}"
            await ctx.send(event.chat, EditText(event.message, text, consent_buttons(ctx.settings, language)))
        else:
            await ask(ctx, person, event.chat, lead=lead)
        return
    shown = notice(ctx.settings, shown_language)
    record = await ctx.store.consent(person.pseudonym)
    already = record is not None and record.version == current
    if not already:  # agreeing again to the same notice records nothing new
        await ctx.store.record_consent(
            person.pseudonym,
            ConsentRecord(version=current, text_sha256=text_sha256(shown), language=shown_language, given_at=int(time.time())),
        )
        log.info("consent recorded (version %s)", current)
    held = ctx.memory.peek(ctx.memory.awaiting_consent, person.pseudonym)
    if held is not None and held.chat.pseudonym == event.chat.pseudonym:
        ctx.memory.take(ctx.memory.awaiting_consent, person.pseudonym)
    else:
        held = None  # a photo waiting in another chat waits for an answer there
    await ctx.send(event.chat, AnswerButton(event.answer_handle, t("consent.already" if already else "consent.thanks", language)))
    if event.chat.private and event.message is not None and not already:
        await ctx.send(event.chat, EditText(event.message, shown + "\n\n" + t("consent.recorded", language, version=current)))
    if held is not None and held.resume is not None:
        held.person = replace(held.person, language=language)  # the language the person just answered in
        await held.resume(ctx, held)
    elif event.chat.private:
        await ctx.send(event.chat, SendText(t("consent.already" if already else "consent.thanks", language)))


async def refuse(event: ButtonEvent, ctx: Context, choice: str) -> None:
    """"No, thanks" and "I'm under N" withdraw consent, whatever notice they answer: everything
    about the person is erased (as /revoke does), and the answer says what was removed."""
    person, language = event.person, event.person.language
    waiting = ctx.memory.peek(ctx.memory.awaiting_consent, person.pseudonym)
    if not event.chat.private and (waiting is None or waiting.chat.pseudonym != event.chat.pseudonym):
        # In a group the question is for the photo's author: a bystander's "no" changes nothing.
        await ctx.send(event.chat, AnswerButton(event.answer_handle, t("consent.not_for_you", language), alert=True))
        return
    removed = await erase(ctx, person)
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    if choice == "under":
        text = t("consent.under_age_refused", language, min_age=ctx.settings.min_age)
    else:
        text = t("consent.declined", language)
    if stored_anything(removed):
        text = receipt_for(event.chat, language, removed, lead=f"{text}\n\n{t('consent.withdrawn', language)}")
    else:
        text = f"{text} {t('consent.nothing_kept', language)}"
    await ctx.edit_or_send(event.chat, event.message if event.chat.private else None, text)
