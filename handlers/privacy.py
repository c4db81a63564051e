"""The rights people have: see what is held, take a copy, withdraw, erase."""

from __future__ import annotations

import json
import logging
import time

from . import consent
from .context import Context
from .erasure import erase, receipt_for
from .events import CommandEvent, Person
from .replies import SendDocument, SendText
from .texts import t

__all__ = ["erase"]

log = logging.getLogger("darkroom.privacy")


async def delete_my_data(event: CommandEvent, ctx: Context) -> None:
    """Works with or without consent, in private and group chats; repeating it is harmless."""
    removed = await erase(ctx, event.person)
    text = receipt_for(event.chat, event.person.language, removed)
    await ctx.send(event.chat, SendText(text, reply_to=event.message))


async def revoke(event: CommandEvent, ctx: Context) -> None:
    removed = await erase(ctx, event.person)
    language = event.person.language
    text = receipt_for(event.chat, language, removed, lead=t("consent.withdrawn", language))
    await ctx.send(event.chat, SendText(text, reply_to=event.message))


async def private_only(event: CommandEvent, ctx: Context) -> None:
    """Personal data is shown in a private chat only: in a group, a pointer there instead."""
    text = t("privacy.private_only", event.person.language, command=event.name)
    await ctx.send(event.chat, SendText(text, reply_to=event.message))


async def privacy(event: CommandEvent, ctx: Context) -> None:
    """/privacy in a private chat (in groups: `private_only`)."""
    await ctx.send(event.chat, SendText(await privacy_text(ctx, event.person), reply_to=event.message))


async def privacy_text(ctx: Context, person: Person) -> str:
    """Generated from the running configuration, not hand-written."""
    language = person.language
    settings = ctx.settings
    record = await ctx.store.consent(person.pseudonym)
    preferences = await ctx.store.preferences(person.pseudonym)
    none = t("privacy.none", language)
    consent_state = (
        t("privacy.consent_yes", language, date=time.strftime("%Y-%m-%d", time.gmtime(record.given_at)), version=record.version)
        if record
        else none
    )
    lines = [
        t("privacy.header", language),
        "",
        consent.notice(settings, language, question=False),
        "",
        t(
            "privacy.now",
            language,
            consent=consent_state,
            style=preferences.style or none,
            jobs=ctx.queue.pending(person.pseudonym),
            held=ctx.memory.held_count(person.pseudonym),
        ),
        "",
        _retention(ctx, language),
        "",
        _models(ctx, language),
    ]
    version = settings.version or "?"
    lines += ["", t("privacy.software", language, version=version)]
    if settings.operator:
        lines.append(t("privacy.operator", language, operator=settings.operator))
    return "\n".join(lines)


def _retention(ctx: Context, language: str) -> str:
    ttl = ctx.settings.input_ttl
    pending = ctx.settings.pending_ttl // 60
    held = t("privacy.held_now", language) if ttl <= 0 else t("privacy.held_for", language, ttl=ttl)
    return t("privacy.how_long", language, held=held, pending=pending)


def _models(ctx: Context, language: str) -> str:
    lines = [t("privacy.models", language)]
    for model in ctx.catalogue.models.values():
        lines.append(f"• {model.key}: {model.licence}. {model.source}. SHA-256 {model.sha256[:16]}…")
    lines.append(t("privacy.own_filters", language))
    return "\n".join(lines)


async def my_data(event: CommandEvent, ctx: Context) -> None:
    """Everything held about the person, as a small JSON document (private chats only: in
    groups, `private_only`)."""
    document = await export(ctx, event.person)
    data = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
    caption = t("privacy.export_caption", event.person.language)
    await ctx.send(event.chat, SendDocument(data, "darkroom-my-data.json", caption))


async def export(ctx: Context, person: Person) -> dict:
    history = await ctx.store.consent_history(person.pseudonym)
    current = await ctx.store.consent(person.pseudonym)
    preferences = await ctx.store.preferences(person.pseudonym)
    return {
        "pseudonym": person.pseudonym,
        "consent": None
        if current is None
        else {
            "version": current.version,
            "text_sha256": current.text_sha256,
            "language": current.language,
            "given_at": _iso(current.given_at),
            "valid_now": current.version == consent.current_version(ctx.settings),
        },
        "consent_history": [
            {"version": r.version, "text_sha256": r.text_sha256, "language": r.language, "given_at": _iso(r.given_at)}
            for r in history
        ],
        "preferences": {
            "style": preferences.style,
            "strength": preferences.strength,
            "keep_colours": preferences.keep_colours,
        },
        "jobs_waiting": ctx.queue.pending(person.pseudonym),
        "photos_in_memory": ctx.memory.held_count(person.pseudonym),
    }


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

