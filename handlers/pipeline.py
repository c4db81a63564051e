"""The styling pipeline: fetch → load → confirm faces → render → deliver → release.

It runs wherever the engine is: in the bot's own process (the in-process queue) or in a
`darkroom worker` (bot/scale/), the same steps either way. It takes plain data
(`StyleJob`, which a broker can carry once sealed) and the two ports it needs (a platform to
fetch from and deliver through, an engine), and returns plain data (`Outcome`). What only the
conversation holds (status messages, locks, consent, queue positions) stays in
handlers/photos.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from inference import ImageRejected, Picture, StyleRequest

from .context import where
from .events import Address, MessageRef, PhotoRef
from .memory import InputBuffer, forget_freed_copies
from .ports import DeliveryFailed, FetchFailed, PhotoTooLarge, Platform
from .replies import Button, ChatAction, Keyboard, OutPhoto, SendPhotos

log = logging.getLogger("darkroom.pipeline")

class OutcomeKind(StrEnum):
    """How a job ended. Each is a plain word so that a worker can send it back and a metric can
    count it; what the person is told for each is handlers/photos.py OUTCOME_TEXT."""

    DONE = "done"
    FACES = "faces"  # several faces and nobody confirmed that everyone pictured agreed
    REJECTED = "rejected"  # the image itself was refused (detail: the reason)
    TOO_LARGE = "too_large"
    FETCH_FAILED = "fetch_failed"
    UNDELIVERED = "undelivered"  # the platform would not take the styled photo
    FAILED = "failed"
    CLAIMED = "claimed"  # someone else answers for this job (already delivered, or erased): no reply
    # Only the front concludes these (a job sent to workers): no answer in time, or no broker.
    LOST = "lost"
    BUSY = "busy"


@dataclass(frozen=True)
class StyleJob:
    """One styling job as plain data: what a worker needs to fetch the photos from the platform
    itself, style them and answer the chat. No photo bytes, ever; the raw references here are
    sealed before they leave the process (bot/scale/). The conversation follows the same
    job as a `photos.ChatJob` (its status message, lock and phase): one job, two sides."""

    key: str  # idempotency key: one reply per job, however often it runs
    chat: Address
    photos: tuple[PhotoRef, ...]
    request: StyleRequest
    caption: str  # the styled photo's caption, in the person's language
    another: Button | None = None  # "another style" (only when the input stays in memory)
    file: Button | None = None  # "Full quality (file)" (only when the result can stay in memory)
    reply_to: MessageRef | None = None
    style_picture: PhotoRef | None = None  # "any picture as style"
    others_confirmed: bool = False
    max_input_bytes: int = 20 * 1024 * 1024
    # The preview sheet instead of one style: the first photo in every style, numbered, with
    # ``picker`` under it (handlers/photos.py offer_previews); ``language`` names its tiles.
    preview: bool = False
    language: str = "en"
    picker: Keyboard = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StyleJob:
        def ref(d):
            return None if d is None else PhotoRef(**d)

        def message(d):
            return None if d is None else MessageRef(Address(**d["chat"]), d["message_id"])

        def button(d):
            return None if d is None else Button(d["label"], d["data"], tuple(d["typed"]), d.get("web_app", ""))

        return cls(
            key=data["key"],
            chat=Address(**data["chat"]),
            photos=tuple(PhotoRef(**p) for p in data["photos"]),
            request=StyleRequest(**data["request"]),
            caption=data["caption"],
            another=button(data.get("another")),
            file=button(data.get("file")),
            reply_to=message(data.get("reply_to")),
            style_picture=ref(data.get("style_picture")),
            others_confirmed=data.get("others_confirmed", False),
            max_input_bytes=data.get("max_input_bytes", 20 * 1024 * 1024),
            preview=bool(data.get("preview", False)),
            language=str(data.get("language", "en")),
            picker=tuple(tuple(button(b) for b in row) for row in data.get("picker", ())),
        )


@dataclass
class Outcome:
    kind: OutcomeKind
    detail: str = ""  # the rejection reason, or an error's type name (never a message)
    faces: int = 0
    styled: int = 0
    sent: MessageRef | None = None  # where the styled photo landed
    seconds: float = 0.0  # styling time (load + render)
    inputs: list[InputBuffer] = field(default_factory=list, repr=False)  # kept in memory (front only)
    results: list[InputBuffer] = field(default_factory=list, repr=False)  # the delivered results, for job.file (front only)

    def to_dict(self) -> dict:
        sent = None if self.sent is None else {"chat": asdict(self.sent.chat), "message_id": self.sent.message_id}
        return {"kind": self.kind.value, "detail": self.detail, "faces": self.faces, "styled": self.styled, "sent": sent, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict) -> Outcome:
        sent = data.get("sent")
        return cls(
            kind=OutcomeKind(data["kind"]) if data.get("kind") in tuple(OutcomeKind) else OutcomeKind.FAILED,
            detail=str(data.get("detail", "")),
            faces=int(data.get("faces", 0)),
            styled=int(data.get("styled", 0)),
            sent=None if sent is None else MessageRef(Address(**sent["chat"]), sent["message_id"]),
            seconds=float(data.get("seconds", 0.0)),
        )


Claim = Callable[[], Awaitable[bool]]  # True: this run may deliver (nobody else did, no erasure)
UploadWatch = Callable[[asyncio.Future], None]  # told of the upload once the photo is on its way


# -- the steps ----------------------------------------------------------------------------------


async def fetch(platform: Platform, refs: tuple[PhotoRef, ...], max_bytes: int) -> list[InputBuffer]:
    """Download each photo into memory (never to disk)."""
    buffers: list[InputBuffer] = []
    try:
        for ref in refs:
            buffers.append(InputBuffer(await platform.fetch(ref, max_bytes)))
    except BaseException:
        release(buffers, [])
        raise
    return buffers


async def load_style_picture(platform: Platform, engine, ref: PhotoRef | None, max_bytes: int) -> Picture | None:
    """The picture whose look is used: downloaded, decoded (no face detection), its bytes released."""
    if ref is None:
        return None
    (buffer,) = await fetch(platform, (ref,), max_bytes)
    try:
        return await engine.load(buffer.data, detect_faces=False)
    finally:
        buffer.release()


async def load(engine, buffers: list[InputBuffer], pictures: list[Picture]) -> list[Picture]:
    """Decode each photo; every picture is appended to ``pictures`` at once, so that whatever
    happens next, release() finds it."""
    loaded = []
    for buffer in buffers:
        picture = await engine.load(buffer.data)
        pictures.append(picture)
        loaded.append(picture)
    return loaded


def faces_to_confirm(pictures: list[Picture], others_confirmed: bool) -> int:
    """How many faces the sender must confirm agreed (0: nothing to ask)."""
    faces = max((p.face_count for p in pictures), default=0)
    return faces if faces > 1 and not others_confirmed else 0


async def render(engine, pictures: list[Picture], request: StyleRequest, style_picture: Picture | None) -> list:
    return [await engine.render(picture, request, style_picture) for picture in pictures]


async def render_previews(engine, pictures: list[Picture], job: StyleJob) -> list:
    """The preview sheet of the first photo (an album's others are styled as it is chosen)."""
    return [await engine.render_sheet(pictures[0], job.language, job.request.mark)]


def reply_for(job: StyleJob, results: list) -> SendPhotos:
    out = tuple(OutPhoto(r.jpeg, job.caption if i == 0 else "") for i, r in enumerate(results))
    row = tuple(b for b in (job.another, job.file) if b is not None)
    buttons = job.picker + ((row,) if row else ())
    return SendPhotos(out, reply_to=job.reply_to, buttons=buttons)


async def deliver(platform: Platform, job: StyleJob, photos: SendPhotos, on_upload: UploadWatch | None = None) -> MessageRef | None:
    """Send the styled photo. The upload is shielded from cancellation: once the platform has
    the bytes, the photo reaches the chat whether or not we wait, and only by waiting do we
    learn where it landed, which is what an erasure meanwhile needs in order to delete it."""
    upload = asyncio.ensure_future(platform.send(job.chat, photos))
    if on_upload is not None:
        on_upload(upload)
    return await asyncio.shield(upload)


def release(buffers: list[InputBuffer], pictures: list[Picture]) -> None:
    """Zero the downloaded bytes and the decoded pixels (in place: nothing to collect)."""
    for buffer in buffers:
        buffer.release()
    for picture in pictures:
        picture.rgb.fill(0)  # decoded pixels are released as thoroughly as the bytes
    pictures.clear()


# -- the pipeline -------------------------------------------------------------------------------


async def style(
    job: StyleJob,
    platform: Platform,
    engine,
    held: list[InputBuffer] | None = None,
    *,
    keep_inputs: bool = False,
    claim: Claim | None = None,
    on_upload: UploadWatch | None = None,
) -> Outcome:
    """Run the steps for ``job``. ``held``: inputs already in memory (not fetched again).
    ``keep_inputs``: the inputs outlive the run (returned in the outcome) when it ends with the
    faces question or a reply, for "another style" — only where they can stay in memory.
    ``claim``: asked right before delivering; False means someone else answers (no reply).
    Cancellation propagates (the caller knows why it cancelled)."""
    buffers = list(held or [])
    pictures: list[Picture] = []
    kept = False
    started = time.monotonic()
    try:
        style_picture = await load_style_picture(platform, engine, job.style_picture, job.max_input_bytes)
        if style_picture is not None:
            pictures.append(style_picture)
        buffers += await fetch(platform, job.photos[:1] if job.preview else job.photos, job.max_input_bytes)
        loaded = await load(engine, buffers, pictures)
        faces = faces_to_confirm(loaded, job.others_confirmed)
        if faces:
            # No preview either: the sheet shows everyone pictured, styled, so it waits for the
            # same "everyone agreed" that the styling asks for once a style is chosen.
            kept = keep_inputs and not job.preview
            return Outcome(OutcomeKind.FACES, faces=faces, inputs=buffers if kept else [])
        if job.preview:
            keep_inputs = False  # the choice fetches the photo again: nothing waits in memory
            results = await render_previews(engine, loaded, job)
        else:
            results = await render(engine, loaded, job.request, style_picture)
        seconds = time.monotonic() - started
        await platform.send(job.chat, ChatAction("upload_photo"))
        if claim is not None and not await claim():
            return Outcome(OutcomeKind.CLAIMED, seconds=seconds)
        try:
            sent = await deliver(platform, job, reply_for(job, results), on_upload)
        except DeliveryFailed as exc:
            # Given up after the adapter's retries: the photo is dropped (and released below).
            log.warning("could not deliver a styled photo on %s: %s", platform.name, exc)
            return Outcome(OutcomeKind.UNDELIVERED, seconds=seconds)
        kept = keep_inputs
        # The signed results themselves, for "Full quality (file)": only where they can stay in
        # this process's memory (keep_inputs), only when the job offers the button.
        files = [InputBuffer(bytearray(r.jpeg)) for r in results] if keep_inputs and job.file is not None else []
        return Outcome(
            OutcomeKind.DONE, styled=len(results), sent=sent, seconds=seconds, inputs=buffers if kept else [], results=files
        )
    except ImageRejected as exc:
        log.info("input refused: %s", exc.reason)
        return Outcome(OutcomeKind.REJECTED, detail=exc.reason)
    except PhotoTooLarge:
        return Outcome(OutcomeKind.TOO_LARGE)
    except FetchFailed as exc:
        log.warning("photo download failed on %s: %s", platform.name, type(exc).__name__)
        return Outcome(OutcomeKind.FETCH_FAILED, detail=type(exc).__name__)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never a traceback; the log line has no personal data
        log.error("styling failed: %s at %s", type(exc).__name__, where(exc))
        return Outcome(OutcomeKind.FAILED, detail=type(exc).__name__)
    finally:
        release([] if kept else buffers, pictures)
        # Copies the libraries made (httpx keeps the downloaded body in a reference cycle) are
        # freed now, so that glibc wipes them (bot/safeguards/heap.py): once per job, where the photo was.
        forget_freed_copies()


class LocalStyler:
    """The pipeline in this process, with the bot's own engine (the embedded default; with a
    broker, bot/scale/front.py RemoteStyler runs it on a `darkroom worker` instead)."""

    keeps_inputs = True

    def __init__(self, engine) -> None:
        self.engine = engine

    async def style(self, job: StyleJob, platform: Platform, held: list[InputBuffer], on_upload: UploadWatch) -> Outcome:
        return await style(job, platform, self.engine, held, keep_inputs=True, on_upload=on_upload)
