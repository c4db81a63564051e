"""The journey of a photo: consent check → style choice → queue → engine → reply → release.

Nothing is downloaded before the person's consent is on record: until then only the platform's
reference waits in memory. The download happens when the job starts, into memory, and the
buffers are zeroed and dropped right after the reply (or after DARKROOM_INPUT_TTL).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from functools import partial

from inference import PICTURE_STYLE, StyleRequest

from . import consent, pipeline
from .context import Context, where
from .events import ButtonEvent, Chat, CommandEvent, MessageRef, Person, PhotoEvent, PhotoRef, TextEvent, UnsupportedEvent
from .memory import HeldInput, HeldPhotos
from .pipeline import LocalStyler, Outcome, OutcomeKind, StyleJob
from .ports import QueueRefused, Styler, TooManyPending
from .registry import PRIVATE, Routes
from .replies import AnswerButton, Button, ChatAction, DeleteMessage, EditText, SendText
from .styles import parse_request, picker, style_label
from .texts import t

log = logging.getLogger("darkroom.photos")
routes = Routes()

PICTURE = PICTURE_STYLE
POSITION_EDIT_INTERVAL = 3.0  # seconds between queue-position edits of one status message


@dataclass
class ChatJob:
    """A style job as its chat follows it: who, where, the status message, its lock and phase,
    the upload an erasure may have to take back. What the pipeline (and a broker) gets of it is
    `style_job_for(ctx, job, name)`, the same job as plain data: a `pipeline.StyleJob`."""

    person: Person
    chat: Chat
    photos: tuple[PhotoRef, ...]
    request: StyleRequest
    selfie: MessageRef | None  # the person's own message (deleted after the reply in private)
    more_selfies: tuple[MessageRef, ...] = ()  # the rest of an album
    reply_to: MessageRef | None = None  # in groups the result answers the photo message
    held_input: HeldInput | None = None  # "another style": the input is already in memory
    style_picture: PhotoRef | None = None  # "any picture as style"
    others_confirmed: bool = False  # everyone pictured agreed (asked when several faces are found)
    status: MessageRef | None = None
    status_sent: bool = False  # platforms that cannot edit return no reference to edit
    phase: str = "queued"  # queued → running → finished
    last_position_edit: float = field(default=0.0)
    status_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    upload: asyncio.Future | None = field(default=None, repr=False)  # the styled photo on its way
    waiting_for_answer: bool = False  # the downloaded photo waits for "everyone agreed"
    key: str = field(default_factory=lambda: secrets.token_hex(16))  # one reply per job (pipeline.StyleJob)
    counted: int = 0  # photos its preview sheet already counted against the hourly limit

    @property
    def selfies(self) -> tuple[MessageRef | None, ...]:
        return (self.selfie, *self.more_selfies)


# -- entry points -------------------------------------------------------------------------------


@routes.on_photo(PRIVATE)  # in groups: groups.photo_in_group
async def on_photo(event: PhotoEvent, ctx: Context) -> None:
    person, language = event.person, event.person.language
    if event.caption.strip().lower().startswith("/style_from"):
        # Only the picture's look is used, never its people: a forwarded picture may be a style.
        await save_style_picture(ctx, person, event.chat, event.photos[:1], event.message)
        return
    if event.from_someone_else:
        # The sender is not the photo's author, and only the author can agree to its styling.
        await ctx.send(event.chat, SendText(t("photo.forwarded", language), reply_to=event.message))
        return
    selfies = (event.message, *event.more_messages)
    if ctx.queue.pending(person.pseudonym) >= ctx.queue.per_person:
        # Already as many photos waiting as allowed: refuse before looking anything up, so that
        # a flood of photos costs the bot (and everyone else) next to nothing. The bot is done
        # with this photo message, so it goes too (DARKROOM_DELETE_SELFIE).
        await refuse(ctx, person, event.chat, TooManyPending(), None)
        ctx.track_selfies(event.chat, person.pseudonym, selfies)
        await ctx.delete_selfies(person.pseudonym, selfies)
        return
    await _drop_waiting(ctx, person, event.chat)
    ctx.track_selfies(event.chat, person.pseudonym, selfies)
    limit = ctx.settings.album_limit
    if len(event.photos) > limit:
        await ctx.send(event.chat, SendText(t("photo.album_limit", language, limit=limit)))
    held = HeldPhotos(
        person=person,
        chat=event.chat,
        photos=event.photos[:limit],
        message=event.message,
        more_messages=event.more_messages,
    )
    if not await consent.has_consent(ctx, person):
        # Hold the reference only (not the photo) while the person reads the notice.
        held.request = _caption_request(ctx, event.caption, None)
        held.resume = choose_style_or_ask
        ctx.memory.hold(ctx.memory.awaiting_consent, held)
        held.prompt = await consent.ask(ctx, person, event.chat, lead=t("consent.needed_first", language))
        return
    preferences = await ctx.store.preferences(person.pseudonym)
    held.request = _caption_request(ctx, event.caption, preferences)
    await choose_style_or_ask(ctx, held)


@routes.on_unsupported(PRIVATE)  # in groups the bot says nothing
async def on_unsupported(event: UnsupportedEvent, ctx: Context) -> None:
    key = "photo.not_image" if event.what == "document" else "photo.unsupported_message"
    await ctx.send(event.chat, SendText(t(key, event.person.language)))


async def style_from(event: CommandEvent, ctx: Context) -> None:
    if not event.replied_photos:
        await ctx.send(event.chat, SendText(t("photo.style_from_usage", event.person.language)))
        return
    await save_style_picture(ctx, event.person, event.chat, event.replied_photos[:1], event.replied_message)


async def _drop_waiting(ctx: Context, person: Person, chat: Chat) -> None:
    """A new photo replaces one still waiting for consent or a style in this chat: the bot is
    done with the earlier one, so its message goes too."""
    for table in (ctx.memory.awaiting_consent, ctx.memory.awaiting_style):
        waiting = ctx.memory.peek(table, person.pseudonym)
        if waiting is not None and waiting.chat.pseudonym == chat.pseudonym:
            ctx.memory.take(table, person.pseudonym)
            await drop_sheet(ctx, waiting)
            await ctx.delete_selfies(person.pseudonym, (waiting.message, *waiting.more_messages))


async def save_style_picture(ctx: Context, person: Person, chat: Chat, photos: tuple[PhotoRef, ...], message: MessageRef | None) -> None:
    """Remember (by reference only) the picture whose look the next photo should take."""
    language = person.language
    for table in (ctx.memory.awaiting_consent, ctx.memory.awaiting_style):
        waiting = ctx.memory.peek(table, person.pseudonym)
        if waiting is not None and message is not None and waiting.message == message:
            ctx.memory.take(table, person.pseudonym)  # that picture is a style, not a photo to style
    ctx.memory.hold(ctx.memory.style_pictures, HeldPhotos(person=person, chat=chat, photos=photos, message=message))
    if not await consent.has_consent(ctx, person):
        await consent.ask(ctx, person, chat)
        return
    await ctx.send(chat, SendText(t("photo.style_picture_saved", language)))


def _caption_request(ctx: Context, caption: str, preferences) -> StyleRequest | None:
    if not caption.strip():
        return None
    return parse_request(caption, ctx.catalogue, preferences)


async def choose_style_or_ask(ctx: Context, held: HeldPhotos) -> None:
    """Consent is on record: style now when the style is known, otherwise offer the picker."""
    person = held.person
    picture = ctx.memory.peek(ctx.memory.style_pictures, person.pseudonym)
    if picture is not None and picture.chat.pseudonym == held.chat.pseudonym and held.request is None:
        preferences = await ctx.store.preferences(person.pseudonym)
        held.request = StyleRequest(PICTURE, preferences.strength, preferences.keep_colours)
    if held.request is None:
        preferences = await ctx.store.preferences(person.pseudonym)
        if preferences.style and ctx.catalogue.find(preferences.style):
            held.request = StyleRequest(preferences.style, preferences.strength, preferences.keep_colours)
    if held.request is None:
        ctx.memory.hold(ctx.memory.awaiting_style, held)
        if ctx.settings.preview_sheet and held.chat.private:
            await offer_previews(ctx, held)
        else:
            await offer_picker(ctx, held)
        return
    await queue_styling(ctx, held)


async def offer_picker(ctx: Context, held: HeldPhotos) -> None:
    """The style names to choose from (without the preview sheet, or when it cannot be made)."""
    language = held.person.language
    held.prompt = await ctx.send(held.chat, SendText(t("styles.pick", language), picker(ctx, language, "pick")))


# -- a style for the photo waiting for one --------------------------------------------------------


@routes.button("pick")
async def choose_for_photo(event: ButtonEvent, ctx: Context) -> None:
    """A style chosen for the photo that is waiting for one."""
    key = event.data.partition(":")[2]
    style = ctx.catalogue.find(key)
    held = ctx.memory.take(ctx.memory.awaiting_style, event.person.pseudonym)
    if held is None or held.chat.pseudonym != event.chat.pseudonym or style is None:
        if held is not None:
            ctx.memory.hold(ctx.memory.awaiting_style, held)
        await _nothing_waiting(event, ctx)
        return
    held.request = await _chosen(event, ctx, style, edit=held.sheet is None)
    await queue_styling(ctx, held)


async def _nothing_waiting(event: ButtonEvent, ctx: Context) -> None:
    if not event.chat.private:  # someone else's picker in a group (or an expired one): theirs stays as it is
        await ctx.send(event.chat, AnswerButton(event.answer_handle, t("group.pick_not_yours", event.person.language), alert=True))
        return
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    await ctx.edit_or_send(event.chat, event.message, t("styles.nothing_waiting", event.person.language))


async def _chosen(event: ButtonEvent, ctx: Context, style, edit: bool = True) -> StyleRequest:
    """Acknowledge the choice (the picker becomes "Style: X"; a preview sheet goes instead, in
    queue_styling) and build the request with the person's own strength and colour preferences."""
    language = event.person.language
    await ctx.send(event.chat, AnswerButton(event.answer_handle, style.display_name(language) if not edit else ""))
    if edit and event.message is not None:
        await ctx.send(event.chat, EditText(event.message, t("styles.chosen", language, style=style.display_name(language))))
    preferences = await ctx.store.preferences(event.person.pseudonym)
    return StyleRequest(style.key, preferences.strength, preferences.keep_colours)


async def typed_style(event: TextEvent, ctx: Context) -> bool:
    """A style typed by name (any page, with options: "oil 0.6 keep colours") for the photo
    that is waiting for one. Returns False when nothing waits or the words name no style."""
    held = ctx.memory.peek(ctx.memory.awaiting_style, event.person.pseudonym)
    if held is None or held.chat.pseudonym != event.chat.pseudonym:
        return False
    preferences = await ctx.store.preferences(event.person.pseudonym)
    request = parse_request(event.text, ctx.catalogue, preferences)
    if request is None:
        await ctx.send(event.chat, SendText(t("styles.unknown", event.person.language, name=event.text.strip()[:40])))
        return True
    ctx.memory.take(ctx.memory.awaiting_style, event.person.pseudonym)
    held.request = request
    await queue_styling(ctx, held)
    return True


@routes.button("again")
async def choose_again(event: ButtonEvent, ctx: Context) -> None:
    """Another style for the input still held in memory (only with DARKROOM_INPUT_TTL > 0)."""
    language = event.person.language
    key = event.data.partition(":")[2]
    if key == "":
        await ctx.send(event.chat, AnswerButton(event.answer_handle))
        await ctx.send(event.chat, SendText(t("styles.pick", language), picker(ctx, language, "again")))
        return
    style = ctx.catalogue.find(key)
    held = ctx.memory.take_input(event.person.pseudonym)
    if held is None or style is None or held.chat.pseudonym != event.chat.pseudonym:
        if held is not None:
            ctx.memory.keep_input(held)
        await _nothing_waiting(event, ctx)
        return
    await queue_restyling(ctx, held, await _chosen(event, ctx, style))


# -- queueing -----------------------------------------------------------------------------------


async def queue_styling(ctx: Context, held: HeldPhotos) -> None:
    """Queue the styling of ``held`` (its request is set)."""
    assert held.request is not None
    language = held.person.language
    await drop_sheet(ctx, held)  # chosen: the previews have done their job
    too_big = [p for p in held.photos if p.size and p.size > ctx.settings.max_input_bytes]
    if too_big:
        limit_mb = ctx.settings.max_input_bytes // (1024 * 1024)
        await ctx.send(held.chat, SendText(t("photo.too_large", language, limit_mb=limit_mb)))
        await ctx.delete_selfies(held.person.pseudonym, (held.message, *held.more_messages))
        return
    style_picture = None
    if held.request.style == PICTURE:
        picture = ctx.memory.take(ctx.memory.style_pictures, held.person.pseudonym)
        if picture is None:
            await ctx.send(held.chat, SendText(t("styles.nothing_waiting", language)))
            await ctx.delete_selfies(held.person.pseudonym, (held.message, *held.more_messages))
            return
        style_picture = picture.photos[0]
    job = ChatJob(
        person=held.person,
        chat=held.chat,
        photos=held.photos,
        request=held.request,
        selfie=held.message if held.chat.private else None,
        more_selfies=held.more_messages if held.chat.private else (),
        reply_to=None if held.chat.private else held.message,
        style_picture=style_picture,
        others_confirmed=held.confirmed,
        counted=held.counted,
    )
    await enqueue(ctx, job)


async def queue_restyling(ctx: Context, held: HeldInput, request: StyleRequest) -> None:
    """Style the input that is still in memory (DARKROOM_INPUT_TTL) with another style."""
    job = ChatJob(
        person=held.person,
        chat=held.chat,
        photos=(),
        request=request,
        selfie=None,
        reply_to=None if held.chat.private else held.message,
        held_input=held,
        others_confirmed=True,  # it was styled before, so any question was answered then
    )
    await enqueue(ctx, job)


@routes.button("faces")
async def everyone_agreed(event, ctx: Context) -> None:
    """The answer to "did everyone pictured agree?" for a downloaded photo with several faces."""
    language = event.person.language
    held = ctx.memory.take_input(event.person.pseudonym, ctx.memory.awaiting_confirmation)
    await ctx.send(event.chat, AnswerButton(event.answer_handle))
    if held is None or held.chat.pseudonym != event.chat.pseudonym:
        if held is not None:
            ctx.memory.keep_input(held, ctx.memory.awaiting_confirmation)
        await ctx.edit_or_send(event.chat, event.message, t("styles.nothing_waiting", language))
        return
    waiting = held.payload
    assert isinstance(waiting, ChatJob)  # what awaiting_confirmation holds
    if event.data != "faces:yes":
        held.release()
        await ctx.edit_or_send(event.chat, event.message, t("photo.faces_declined", language))
        await ctx.delete_selfies(waiting.person.pseudonym, waiting.selfies)
        return
    await ctx.edit_or_send(event.chat, event.message, t("photo.faces_yes", language) + " ✓")
    job = ChatJob(
        person=waiting.person,
        chat=waiting.chat,
        # Where the styling ran elsewhere (a worker), nothing stayed here: fetched again by reference.
        photos=() if held.buffers else waiting.photos,
        style_picture=waiting.style_picture,
        request=waiting.request,
        selfie=waiting.selfie,
        more_selfies=waiting.more_selfies,
        reply_to=waiting.reply_to,
        held_input=held,
        others_confirmed=True,
    )
    await enqueue(ctx, job)


async def enqueue(ctx: Context, job: ChatJob) -> None:
    language = job.person.language
    # The status lock is held until the one status message exists: the job may start as soon
    # as this coroutine yields, and its own status updates must edit that message, not race it.
    async with job.status_lock:
        try:
            position = ctx.queue.submit(
                job.person.pseudonym,
                partial(style_and_reply, ctx, job),
                on_position=partial(show_position, ctx, job),
                on_drop=partial(tell_shutdown, ctx, job),
                photos=(len(job.held_input.buffers) or 1) if job.held_input is not None else len(job.photos) - job.counted,
            )
        except QueueRefused as exc:
            if job.held_input is not None:
                job.held_input.release()
            job.phase = "finished"
            await refuse(ctx, job.person, job.chat, exc, job.reply_to)
            await ctx.delete_selfies(job.person.pseudonym, job.selfies)
            return
        first = t("photo.queued", language, position=position) if position > 1 else t("photo.received", language)
        job.status = await ctx.send(job.chat, SendText(first, reply_to=job.reply_to))
        job.status_sent = True
        job.last_position_edit = time.monotonic()


async def refuse(ctx: Context, person: Person, chat: Chat, refused: QueueRefused, reply_to: MessageRef | None) -> None:
    """Say why a photo was not queued, at most once a minute: a flood of photos gets one
    answer, not one each."""
    if not ctx.memory.may_warn(person.pseudonym):
        return
    minutes = max(1, round(refused.retry_after / 60))
    await ctx.send(chat, SendText(t(f"photo.{refused.reason}", person.language, minutes=minutes), reply_to=reply_to))


async def tell_shutdown(ctx: Context, job: ChatJob) -> None:
    """The bot is shutting down before this job could run (or finish)."""
    if job.held_input is not None:
        job.held_input.release()
    await show_status(ctx, job, t("photo.shutdown", job.person.language), final=True)
    await ctx.delete_selfies(job.person.pseudonym, job.selfies)


async def show_position(ctx: Context, job: ChatJob, position: int) -> None:
    """Edit the status message with the queue position, at most every few seconds."""
    if not ctx.platform.can_edit or time.monotonic() - job.last_position_edit < POSITION_EDIT_INTERVAL:
        return
    job.last_position_edit = time.monotonic()
    await show_status(ctx, job, t("photo.queued", job.person.language, position=position), position=True)


async def show_status(
    ctx: Context, job: ChatJob, text: str, final: bool = False, success: bool = False, position: bool = False
) -> None:
    """Edit the job's one status message. Where messages cannot be edited, a new message is
    sent only for what the person must know (a refusal or a failure), not for every step: the
    styled photo and its caption already say that it is done."""
    async with job.status_lock:
        if position and job.phase != "queued":
            return  # the job has started: its position is old news
        if final:
            job.phase = "finished"
        if ctx.platform.can_edit and job.status is not None:
            await ctx.send(job.chat, EditText(job.status, text))
        elif not job.status_sent or (final and not success):
            job.status = await ctx.send(job.chat, SendText(text, reply_to=job.reply_to))
            job.status_sent = True


# -- the preview sheet ---------------------------------------------------------------------------
#
# With the picker, the person's own photo in every style (inference/sheet.py), so that a look is
# chosen by seeing it. The sheet is made from the face, so it is treated as a result: made only
# after consent, through the fair queue (here or on a worker), AI-labelled, never stored, and its
# message is deleted once a style is chosen, when a newer photo replaces it, when the choice is
# no longer awaited (after the 10 minutes a choice waits, by the reply janitor: its reference is
# kept as a reply's is) and by /delete_my_data, whose receipt counts it. Whatever keeps the sheet from being
# made, the person gets the names alone, as without it.

PREVIEW = "preview"  # the StyleRequest.style of a preview job (it styles in every style)


async def offer_previews(ctx: Context, held: HeldPhotos) -> None:
    """Queue the preview sheet of ``held`` (waiting in memory.awaiting_style). It counts as the
    photo against the hourly limit, and the styling chosen from it does not count it again."""
    job = ChatJob(person=held.person, chat=held.chat, photos=held.photos[:1], request=StyleRequest(PREVIEW), selfie=None)
    try:
        ctx.queue.submit(held.person.pseudonym, partial(show_previews, ctx, held, job), photos=1)
    except QueueRefused:
        await offer_picker(ctx, held)  # busy or over the limit: the choice is still the person's
        return
    held.counted = 1


async def show_previews(ctx: Context, held: HeldPhotos, job: ChatJob) -> None:
    """The preview job (run by the queue): the sheet with the picker under it, sent to the chat."""
    person, language = held.person, held.person.language
    if ctx.memory.peek(ctx.memory.awaiting_style, person.pseudonym) is not held:
        return  # chosen already (typed), or replaced by a newer photo: no sheet needed
    inflight = await ctx.store.job_started(person.pseudonym, held.chat.address, language)
    try:
        if not await consent.has_consent(ctx, person):
            return
        await ctx.send(held.chat, ChatAction("upload_photo"))
        preview = StyleJob(
            key=job.key,
            chat=held.chat.address,
            photos=held.photos[:1],
            reply_to=None if held.chat.private else held.message,
            request=StyleRequest(PREVIEW, mark=ctx.platform.name in ctx.settings.marked_platforms),
            caption=t(_sheet_caption(ctx, held), language),
            max_input_bytes=ctx.settings.max_input_bytes,
            preview=True,
            language=language,
            picker=picker(ctx, language, "pick", numbered=True),
        )
        try:
            try:
                outcome = await styler(ctx).style(preview, ctx.platform, [], partial(_uploading, job))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the names alone, then; the log line has no personal data
                log.error("preview sheet failed: %s at %s", type(exc).__name__, where(exc))
                outcome = Outcome(OutcomeKind.FAILED)
            assert isinstance(outcome, Outcome)
            await _previews_ended(ctx, held, job, outcome)
        except asyncio.CancelledError:
            if not getattr(ctx.queue, "stopping", False):  # erased: the sheet must not stay
                await asyncio.shield(_take_back(ctx, held, job))
            raise
    finally:
        await asyncio.shield(ctx.store.job_finished(inflight))


def _sheet_caption(ctx: Context, held: HeldPhotos) -> str:
    if not held.chat.private:
        return "styles.sheet_group"  # only the author may choose
    return "styles.sheet" if ctx.platform.has_buttons else "styles.sheet_typed"  # WeChat: nothing to tap


async def _previews_ended(ctx: Context, held: HeldPhotos, job: ChatJob, outcome: Outcome) -> None:
    person = held.person
    if outcome.kind is OutcomeKind.DONE and outcome.sent is not None:
        sent = outcome.sent
        waiting = ctx.memory.peek(ctx.memory.awaiting_style, person.pseudonym) is held
        if waiting:  # from here whoever ends the wait (a choice, a newer photo) deletes it
            held.prompt = held.sheet = sent
        if ctx.platform.can_delete_messages:  # kept until the choice is due at the latest
            delete_at = int(time.time()) + ctx.settings.pending_ttl
            # Written even if an erasure cancels this job meanwhile: _take_back waits for it
            # and takes it back, so that no row outlives the receipt.
            held.remembering = asyncio.ensure_future(ctx.store.remember_reply(person.pseudonym, sent, delete_at))
            await asyncio.shield(held.remembering)
        job.upload = None  # from here the row answers for the sheet (erasure, the janitor)
        log.info("sent a preview sheet in %.2fs", outcome.seconds)
        if not waiting:  # a style was typed, or a newer photo came, while the sheet was made
            await drop_sheet(ctx, replace(held, sheet=sent))
        return
    if ctx.memory.peek(ctx.memory.awaiting_style, person.pseudonym) is not held:
        return
    if outcome.kind in (OutcomeKind.REJECTED, OutcomeKind.TOO_LARGE, OutcomeKind.FETCH_FAILED):
        # The photo itself cannot be styled: say so now, not after a style is chosen.
        ctx.memory.take(ctx.memory.awaiting_style, person.pseudonym)
        text = outcome_text(ctx, job, outcome)
        if text is not None:
            await ctx.send(held.chat, SendText(text))
        await ctx.delete_selfies(person.pseudonym, (held.message, *held.more_messages))
        return
    # Several faces (the sheet would show everyone pictured: the question comes with the
    # styling), busy, lost, failed: the names alone.
    await offer_picker(ctx, held)


async def drop_sheet(ctx: Context, held: HeldPhotos) -> None:
    """Delete ``held``'s preview sheet (where the platform can) and the row that kept its
    reference for the janitor and erasure."""
    sheet, held.sheet = held.sheet, None
    if sheet is None or not ctx.platform.can_delete_messages:
        return
    await ctx.send(sheet.chat, DeleteMessage(sheet))
    await _forget_sheet_row(ctx, held, sheet)


async def _forget_sheet_row(ctx: Context, held: HeldPhotos, sheet: MessageRef) -> None:
    if held.remembering is not None:  # its row may still be on its way to the database
        await asyncio.wait([held.remembering])
    for row, message in await ctx.store.replies_of(held.person.pseudonym):
        if message == sheet:
            await ctx.store.forget_reply(row)


async def _take_back(ctx: Context, held: HeldPhotos, job: ChatJob) -> None:
    """Erased while the sheet was made, sent, or its reference written: delete the sheet once
    it lands (photos.withdraw, which says so in one message) and its row once written."""
    upload = job.upload
    await withdraw(ctx, job)
    if upload is not None and upload.done() and not upload.cancelled() and upload.exception() is None:
        sheet = upload.result()
        if sheet is not None and ctx.platform.can_delete_messages:
            await _forget_sheet_row(ctx, held, sheet)


# -- the work -------------------------------------------------------------------------------------


def styler(ctx: Context) -> Styler:
    return ctx.styler if ctx.styler is not None else LocalStyler(ctx.engine)


def style_job_for(ctx: Context, job: ChatJob, name: str) -> StyleJob:
    """What of ``job`` goes to the pipeline: plain data, nothing of the conversation."""
    language = job.person.language
    ttl = ctx.settings.input_ttl
    caption = t("photo.caption_held", language, style=name, ttl=ttl) if ttl > 0 else t("photo.caption", language, style=name)
    another = Button(t("photo.another", language), "again:", ("again", "换风格")) if ttl > 0 else None
    # "Full quality (file)": the signed result as a document, which platforms deliver byte for
    # byte (labels and Content Credentials intact). Only where buttons exist and the result can
    # stay in this process's memory (DARKROOM_FILE_TTL, not on workers).
    offer_file = ctx.settings.file_ttl > 0 and ctx.platform.has_buttons and styler(ctx).keeps_inputs
    file = Button(t("photo.file", language), "file:") if offer_file else None
    return StyleJob(
        key=job.key,
        chat=job.chat.address,
        photos=job.photos,
        request=replace(job.request, mark=ctx.platform.name in ctx.settings.marked_platforms),
        caption=caption,
        another=another,
        file=file,
        reply_to=job.reply_to,
        style_picture=job.style_picture,
        others_confirmed=job.others_confirmed,
        max_input_bytes=ctx.settings.max_input_bytes,
    )


async def style_and_reply(ctx: Context, job: ChatJob) -> None:
    """Check consent, run the pipeline (here or on a worker), then tell the person how it went
    and release. Runs in the queue's worker."""
    job.phase = "running"
    language = job.person.language
    held = job.held_input.buffers[:] if job.held_input else []
    job.held_input = None
    # Remember (sealed) that this person has a job running, so that if the process dies now the
    # person can be told after the restart; the row goes when the job ends, however it ends.
    inflight = await ctx.store.job_started(job.person.pseudonym, job.chat.address, language)
    try:
        if not await consent.has_consent(ctx, job.person):
            await show_status(ctx, job, t("photo.cancelled", language), final=True)
            return
        name = style_label(ctx, job.request.style, language)
        await show_status(ctx, job, t("photo.styling", language, style=name))
        await ctx.send(job.chat, ChatAction("upload_photo"))
        style_job = style_job_for(ctx, job, name)
        outcome, held = await styler(ctx).style(style_job, ctx.platform, held, partial(_uploading, job)), []
        assert isinstance(outcome, Outcome)  # the Styler port returns one (typed loosely: ports is below pipeline)
        await tell_outcome(ctx, job, outcome)
    except asyncio.CancelledError:
        if getattr(ctx.queue, "stopping", False):
            await asyncio.shield(show_status(ctx, job, t("photo.shutdown", language), final=True))
        else:  # erased: a styled photo already handed to the platform must not stay in the chat
            await asyncio.shield(withdraw(ctx, job))
        job.phase = "finished"
        raise
    except Exception as exc:  # never a traceback to the person; the log line has no personal data
        log.error("styling failed: %s at %s", type(exc).__name__, where(exc))
        await show_status(ctx, job, t("photo.failed", language), final=True)
    finally:
        pipeline.release(held, [])
        if not job.waiting_for_answer:  # done with the person's photo message, whatever the outcome
            await asyncio.shield(ctx.delete_selfies(job.person.pseudonym, job.selfies))
        await asyncio.shield(ctx.store.job_finished(inflight))


def _uploading(job: ChatJob, upload: asyncio.Future) -> None:
    job.upload = upload


# What the person is told for each way a job can end (None: nothing, someone else answered).
OUTCOME_TEXT: dict[OutcomeKind, str | None] = {
    OutcomeKind.DONE: "photo.done",  # "photo.done_held" when the input stays for another style
    OutcomeKind.FACES: "photo.faces_confirm",
    OutcomeKind.REJECTED: "photo.corrupt",  # unless REJECTION_TEXT knows the reason
    OutcomeKind.TOO_LARGE: "photo.too_large",
    OutcomeKind.FETCH_FAILED: "photo.fetch_failed",
    OutcomeKind.UNDELIVERED: "photo.failed",
    OutcomeKind.FAILED: "photo.failed",
    OutcomeKind.CLAIMED: None,  # answered already (a job run again after a worker died)
    OutcomeKind.LOST: "photo.worker_lost",  # only a front with workers concludes it
    OutcomeKind.BUSY: "photo.busy",
}
# Why the engine refused an image (inference.ImageRejected.reason) -> what the person is told.
REJECTION_TEXT = {
    "empty": "photo.corrupt",
    "too_many_bytes": "photo.too_large",
    "too_many_pixels": "photo.too_many_pixels",
    "unsupported_format": "photo.unsupported",
    "corrupt": "photo.corrupt",
    "too_small": "photo.too_small",
    "too_complex": "photo.too_complex",
}


async def tell_outcome(ctx: Context, job: ChatJob, outcome: Outcome) -> None:
    """Tell the person how the pipeline ended, and keep what must be kept."""
    if outcome.kind is OutcomeKind.DONE:
        await remember_reply(ctx, job, outcome)
    keep_or_release_inputs(ctx, job, outcome)
    keep_or_release_results(ctx, job, outcome)
    text = outcome_text(ctx, job, outcome)
    if text is None:
        job.phase = "finished"
    else:
        await show_status(ctx, job, text, final=True, success=outcome.kind is OutcomeKind.DONE)
    if outcome.kind is OutcomeKind.FACES:
        await ask_everyone_agreed(ctx, job, outcome.faces)


async def remember_reply(ctx: Context, job: ChatJob, outcome: Outcome) -> None:
    """The styled photo landed. With DARKROOM_REPLY_TTL its reference is kept, so that it can be
    deleted later: from here that row, and so any erasure, answers for it (not the upload)."""
    job.upload = None
    if outcome.sent is not None and ctx.settings.reply_ttl > 0 and ctx.platform.can_delete_messages:
        await ctx.store.remember_reply(job.person.pseudonym, outcome.sent, int(time.time()) + ctx.settings.reply_ttl)
    log.info("styled %d photo(s) with %s in %.2fs", outcome.styled, job.request.style, outcome.seconds)


def keep_or_release_inputs(ctx: Context, job: ChatJob, outcome: Outcome) -> None:
    """The downloaded inputs stay in memory only to wait for "did everyone pictured agree?", or
    for "another style" (DARKROOM_INPUT_TTL); otherwise they are released now."""
    ttl = ctx.settings.input_ttl
    if outcome.kind is OutcomeKind.FACES:
        expires = time.monotonic() + ctx.settings.pending_ttl
        held = HeldInput(job.person, job.chat, outcome.inputs, job.selfie, expires, payload=job)
        ctx.memory.keep_input(held, ctx.memory.awaiting_confirmation)
    elif outcome.kind is OutcomeKind.DONE and ttl > 0 and outcome.inputs:
        expires = time.monotonic() + ttl
        ctx.memory.keep_input(HeldInput(job.person, job.chat, outcome.inputs, job.selfie or job.reply_to, expires))
    else:
        pipeline.release(outcome.inputs, [])


def keep_or_release_results(ctx: Context, job: ChatJob, outcome: Outcome) -> None:
    """The delivered result stays in memory for "Full quality (file)" (DARKROOM_FILE_TTL), the
    latest one per person; /delete_my_data releases it (memory.forget) and counts it."""
    if outcome.kind is OutcomeKind.DONE and outcome.results and outcome.sent is not None:
        expires = time.monotonic() + ctx.settings.file_ttl
        ctx.memory.keep_input(HeldInput(job.person, job.chat, outcome.results, outcome.sent, expires), ctx.memory.held_results)
    else:
        pipeline.release(outcome.results, [])


def outcome_text(ctx: Context, job: ChatJob, outcome: Outcome) -> str | None:
    key = OUTCOME_TEXT[outcome.kind]
    if outcome.kind is OutcomeKind.REJECTED:
        key = REJECTION_TEXT.get(outcome.detail, key)
    elif outcome.kind is OutcomeKind.DONE and ctx.settings.input_ttl > 0:
        key = "photo.done_held"
    if key is None:
        return None
    limit_mb = ctx.settings.max_input_bytes // (1024 * 1024)
    return t(key, job.person.language, limit_mb=limit_mb, ttl=ctx.settings.input_ttl, count=outcome.faces)


async def ask_everyone_agreed(ctx: Context, job: ChatJob, faces: int) -> None:
    """Several people in the photo: the sender must confirm they all agreed before styling (the
    downloaded input waits in memory.awaiting_confirmation)."""
    language = job.person.language
    buttons = (
        (
            Button(t("photo.faces_yes", language), "faces:yes", ("yes", "是", "1")),
            Button(t("photo.faces_no", language), "faces:no", ("no", "否", "2")),
        ),
    )
    await ctx.send(job.chat, SendText(t("photo.faces_confirm", language, count=faces), buttons, reply_to=job.reply_to))
    job.phase = "finished"
    job.waiting_for_answer = True


async def withdraw(ctx: Context, job: ChatJob) -> None:
    """The person erased their data while this job ran. If its styled photo was already on its
    way, wait for it, delete it the moment its id is known, and say so in one message (the
    receipt went out before the photo arrived, so it could not count it)."""
    upload, job.upload = job.upload, None
    if upload is None:
        return
    try:
        sent = await upload
    except Exception:
        return  # it never arrived: nothing to take back
    language = job.person.language
    if sent is not None and ctx.platform.can_delete_messages:
        await ctx.send(job.chat, DeleteMessage(sent))
        log.info("deleted a styled photo that arrived after its owner's erasure")
        await ctx.send(job.chat, SendText(t("delete.late_delivery", language)))
    else:
        await ctx.send(job.chat, SendText(t("delete.late_delivery_kept", language)))
