"""A picture styled on the person's own device, sent to their chat at their request (the on-device
page's opt-in, `POST /app/send`). It follows the rules of a chat result exactly: only with consent
on record; through the same fair queue, so it counts against the same per-person limits (one at a
time, so many an hour); its message is deleted after DARKROOM_REPLY_TTL; and an erasure removes
it, including one still uploading, which the erasure's receipt counts as a cancelled job."""

from __future__ import annotations

import asyncio
import logging
import time

from .consent import has_consent
from .context import Context
from .events import Address, Person
from .replies import DeleteMessage, OutPhoto, SendPhotos, SendText
from .texts import t

log = logging.getLogger("darkroom.page")
WAIT_LIMIT = 120.0  # seconds the page's request waits for its turn and the upload


class NotDelivered(Exception):
    """The picture did not reach the chat: erased meanwhile, or the queue dropped it."""


async def send_page_result(ctx: Context, person: Person, address: Address, jpeg: bytes) -> None:
    """Queue the delivery of ``jpeg`` as ``person``'s job and wait for it. Raises
    PermissionError without consent on record, QueueRefused (a limit) from the queue, and
    NotDelivered when it was cancelled or never ran."""
    if not await has_consent(ctx, person):
        raise PermissionError("no consent on record")
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        upload = asyncio.ensure_future(ctx.send(address, SendPhotos((OutPhoto(jpeg, t("webapp.sent_caption", person.language)),))))
        try:
            # As a chat result: once the platform has the bytes the photo lands whether or not we
            # wait, and only by waiting do we learn where, which an erasure needs to delete it.
            sent = await asyncio.shield(upload)
        except asyncio.CancelledError:
            if not done.done():
                done.set_exception(NotDelivered("erased while uploading"))
            await asyncio.shield(_take_back(ctx, address, person.language, upload))
            raise
        except Exception as exc:
            if not done.done():
                done.set_exception(NotDelivered(type(exc).__name__))
            return
        if sent is not None and ctx.settings.reply_ttl > 0 and ctx.platform.can_delete_messages:
            await ctx.store.remember_reply(person.pseudonym, sent, int(time.time()) + ctx.settings.reply_ttl)
        log.info("delivered an on-device result to its chat")
        if not done.done():
            done.set_result(None)

    ctx.queue.submit(person.pseudonym, work)
    try:
        await asyncio.wait_for(asyncio.shield(done), WAIT_LIMIT)
    except TimeoutError:
        raise NotDelivered("not run in time") from None  # e.g. erased while still waiting


async def _take_back(ctx: Context, address: Address, language: str, upload: asyncio.Future) -> None:
    """Erased while the picture was uploading: wait for it and delete it the moment its id is
    known (the receipt went out before it landed), as a chat result is taken back."""
    try:
        sent = await upload
    except Exception:
        return  # it never arrived: nothing to take back
    if sent is not None and ctx.platform.can_delete_messages:
        await ctx.send(address, DeleteMessage(sent))
        log.info("deleted an on-device result that arrived after its owner's erasure")
        await ctx.send(address, SendText(t("delete.late_delivery", language)))
    else:
        await ctx.send(address, SendText(t("delete.late_delivery_kept", language)))
