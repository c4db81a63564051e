"""The rights people have: see what is held, take a copy, withdraw, erase."""

from __future__ import annotations

import json
import logging
import time

from . import consent
from .context import Context
from .events import CommandEvent, Person
from .registry import Routes
from .replies import DeleteMessage, SendDocument, SendText
from .texts import t

log = logging.getLogger("darkroom.privacy")
routes = Routes()


async def erase(ctx: Context, person: Person) -> dict[str, int]:
    """Remove every row, queued or running job and held photo of ``person``, and delete the
    bot's styled-photo messages that were waiting for DARKROOM_REPLY_TTL right away."""
    replies = 0
    for _, message in await ctx.store.replies_of(person.pseudonym):
        await ctx.send(message.chat, DeleteMessage(message))
        replies += 1
    rows = await ctx.store.delete_person(person.pseudonym)
    jobs = ctx.queue.cancel_owner(person.pseudonym)
    held = ctx.memory.forget(person.pseudonym)
    ctx.platform.forget(person)
    log.info("erased a person's data: %d rows, %d jobs, %d held", sum(rows.values()), jobs, held)
    return {**rows, "jobs": jobs, "held": held, "replies_deleted": replies}


def receipt(language: str, removed: dict[str, int]) -> str:
    consents = removed.get("consent", 0) + removed.get("consent_history", 0)
    preferences = removed.get("preferences", 0)
    shown = ("consent", "consent_history", "preferences", "jobs", "held", "replies_deleted", "reply_refs")
    other = sum(v for k, v in removed.items() if k not in shown)
    return t(
        "delete.receipt",
        language,
        consents=consents,
        preferences=preferences,
        jobs=removed.get("jobs", 0),
        held=removed.get("held", 0),
        replies=removed.get("replies_deleted", 0),
        other=other,
    )


@routes.command("delete_my_data", "forget_me")
async def delete_my_data(event: CommandEvent, ctx: Context) -> None:
    """Works with or without consent, in private and group chats; repeating it is harmless."""
    removed = await erase(ctx, event.person)
    await ctx.send(event.chat, SendText(receipt(event.person.language, removed), reply_to=event.message))


@routes.command("revoke")
async def revoke(event: CommandEvent, ctx: Context) -> None:
    removed = await erase(ctx, event.person)
    language = event.person.language
    lead = {"en": "Consent withdrawn.", "zh": "已撤回同意。"}[language]
    await ctx.send(event.chat, SendText(lead + "\n" + receipt(language, removed), reply_to=event.message))


@routes.command("privacy")
async def privacy(event: CommandEvent, ctx: Context) -> None:
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
    lines += ["", {"en": f"Software: Darkroom {version}.", "zh": f"软件版本：Darkroom {version}。"}[language]]
    if settings.operator:
        lines.append({"en": f"Operator: {settings.operator}.", "zh": f"运营者：{settings.operator}。"}[language])
    return "\n".join(lines)


def _retention(ctx: Context, language: str) -> str:
    ttl = ctx.settings.input_ttl
    pending = ctx.settings.pending_ttl // 60
    if language == "zh":
        held = "回复后立即释放" if ttl <= 0 else f"回复后最多保留 {ttl} 秒"
        return (
            f"保存期限：照片只在内存中，{held}；等待同意或选择风格的照片引用（未下载）最多 {pending} 分钟；"
            "同意记录和常用风格保存到你发送 /delete_my_data 为止。"
        )
    held = "released right after the reply" if ttl <= 0 else f"kept at most {ttl} seconds after the reply"
    return (
        f"How long: photos live in memory only and are {held}; a photo reference waiting for consent "
        f"or a style choice (not downloaded) at most {pending} minutes; your consent record and favourite "
        "style until you send /delete_my_data."
    )


def _models(ctx: Context, language: str) -> str:
    header = {"en": "Models (all run on this server; none is downloaded at run time):", "zh": "模型（全部在本服务器上运行，运行时不下载任何模型）："}[language]
    lines = [header]
    for model in ctx.catalogue.models.values():
        lines.append(f"• {model.key}: {model.licence}. {model.source}. SHA-256 {model.sha256[:16]}…")
    own = {"en": "• Faithful styles (pencil, comic, film): Darkroom's own code, no weights.", "zh": "• 写实风格（铅笔、漫画、胶片）：Darkroom 自己的代码，不含权重。"}[language]
    lines.append(own)
    return "\n".join(lines)


@routes.command("my_data")
async def my_data(event: CommandEvent, ctx: Context) -> None:
    """Everything held about the person, as a small JSON document sent in the chat only."""
    document = await export(ctx, event.person)
    data = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
    caption = {"en": "Everything Darkroom holds about you.", "zh": "Darkroom 保存的关于你的全部数据。"}[event.person.language]
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

