"""Erasure: everything about a person goes, and the receipt says what went.

Used by /delete_my_data, /revoke, "No, thanks" and "I'm under N" (which withdraw consent too),
and WeChat's unfollow. It imports no other conversation module, so any of them can use it.
"""

from __future__ import annotations

import logging

from .context import Context
from .events import Chat, Person
from .replies import DeleteMessage
from .texts import t

log = logging.getLogger("darkroom.privacy")

# What the receipt lists on its own lines; anything else is counted as "other records".
SHOWN = ("consent", "consent_history", "preferences", "jobs", "held", "replies_deleted", "reply_refs", "selfies_deleted")


async def erase(ctx: Context, person: Person) -> dict[str, int]:
    """Remove every row, queued or running job and held photo of ``person``, delete the bot's
    styled-photo messages that were waiting for DARKROOM_REPLY_TTL and the person's photo
    messages the bot was still holding on to.

    Jobs are cancelled first, before anything awaits: a running job must not get the chance to
    write a reply reference after the rows were read. A job cancelled while its styled photo is
    uploading deletes that photo itself once the platform says where it landed (photos.style_and_reply)."""
    jobs = ctx.queue.cancel_owner(person.pseudonym)
    selfies = await ctx.delete_selfies(person.pseudonym)
    replies = 0
    for _, message in await ctx.store.replies_of(person.pseudonym):
        await ctx.send(message.chat, DeleteMessage(message))
        replies += 1
    rows = await ctx.store.delete_person(person.pseudonym)
    held = ctx.memory.forget(person.pseudonym)
    ctx.platform.forget(person)
    log.info("erased a person's data: %d rows, %d jobs, %d held", sum(rows.values()), jobs, held)
    return {**rows, "jobs": jobs, "held": held, "replies_deleted": replies, "selfies_deleted": selfies}


def stored_anything(removed: dict[str, int]) -> bool:
    """Whether the erasure removed something that was kept (not merely a photo reference
    waiting in memory for an answer)."""
    return any(count for kind, count in removed.items() if kind not in ("held", "selfies_deleted"))


def receipt(language: str, removed: dict[str, int]) -> str:
    consents = removed.get("consent", 0) + removed.get("consent_history", 0)
    other = sum(v for k, v in removed.items() if k not in SHOWN)
    return t(
        "delete.receipt",
        language,
        consents=consents,
        preferences=removed.get("preferences", 0),
        jobs=removed.get("jobs", 0),
        held=removed.get("held", 0),
        replies=removed.get("replies_deleted", 0),
        selfies=removed.get("selfies_deleted", 0),
        other=other,
    )


def receipt_for(chat: Chat, language: str, removed: dict[str, int], lead: str = "") -> str:
    """The receipt in a private chat; in a group only that it is done: what a person had
    stored is nobody else's business."""
    text = receipt(language, removed) if chat.private else t("delete.done_group", language)
    return f"{lead}\n{text}" if lead else text
