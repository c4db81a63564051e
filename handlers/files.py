"""'Full quality (file)': the styled result sent again as a document, byte for byte, so that its
labels and Content Credentials survive the chat (a photo is re-encoded by Telegram). The result
is the one `photos.keep_or_release_results` keeps in memory for DARKROOM_FILE_TTL; erasure
releases it, and wins against an upload in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .context import Context
from .events import ButtonEvent, Chat, MessageRef, Person
from .memory import HeldInput
from .registry import Routes
from .replies import AnswerButton, DeleteMessage, SendDocument, SendText
from .texts import t

log = logging.getLogger("darkroom.files")
routes = Routes()

# Uploads of "Full quality (file)" in flight: they run beside the person's lane, so that an
# erasure sent meanwhile is handled at once (and wins), not after the upload.
_FILE_UPLOADS: set[asyncio.Task] = set()


@routes.button("file")
async def send_as_file(event: ButtonEvent, ctx: Context) -> None:
    """Send the held result as a document (delivered byte for byte: every label and the
    Content Credentials intact). The upload runs in its own task while the entry stays in
    memory.held_results, so /delete_my_data meanwhile releases it and counts it, and the file
    that lands after that is deleted from the chat at once (`_upload_file`)."""
    language = event.person.language
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    held = ctx.memory.held_results.get(event.person.pseudonym)
    if held is None or held.expires < time.monotonic() or held.chat.pseudonym != event.chat.pseudonym or not held.buffers:
        await ctx.send(event.chat, SendText(t("photo.file_gone", language, ttl=ctx.settings.file_ttl)))
        return
    task = asyncio.create_task(_upload_file(ctx, event.person, event.chat, held), name="darkroom-file-upload")
    _FILE_UPLOADS.add(task)
    task.add_done_callback(_FILE_UPLOADS.discard)


async def _upload_file(ctx: Context, person: Person, chat: Chat, held: HeldInput) -> None:
    sent: list[MessageRef] = []
    try:
        for number, buffer in enumerate(list(held.buffers), start=1):
            if buffer.released:
                break  # erased between two files of an album
            landed = await ctx.send(chat, SendDocument(bytes(buffer.data), f"darkroom-result-{number}.jpg"))
            if landed is not None:
                sent.append(landed)
    except Exception as exc:  # one line for the operator, no personal data
        log.warning("could not send a result as a file: %s", type(exc).__name__)
    if not held.buffers:  # erased while it uploaded: what landed goes too, and the person is told
        if sent and ctx.platform.can_delete_messages:
            for landed in sent:
                await ctx.send(chat, DeleteMessage(landed))
            await ctx.send(chat, SendText(t("delete.late_delivery", person.language)))
        elif sent:
            await ctx.send(chat, SendText(t("delete.late_delivery_kept", person.language)))
        return
    if ctx.memory.held_results.get(person.pseudonym) is held:  # one file per result: done with it
        ctx.memory.held_results.pop(person.pseudonym)
        held.release()
    # The file follows the reply rules: with DARKROOM_REPLY_TTL it is deleted when the photo is.
    if ctx.settings.reply_ttl > 0 and ctx.platform.can_delete_messages:
        for landed in sent:
            await ctx.store.remember_reply(person.pseudonym, landed, int(time.time()) + ctx.settings.reply_ttl)
