"""Everything the conversation holds about a person between two messages: in memory only.

Photo *references* wait here for consent or a style choice (at most `pending_ttl`, 10 minutes);
downloaded photo *bytes* wait here only when the operator set `DARKROOM_INPUT_TTL` so that
"another style" works without re-sending; a styled *result* waits `DARKROOM_FILE_TTL` seconds
(one per person, the latest) so that "Full quality (file)" can send it as a document. Every entry expires on its own, and `forget` drops
all of a person's entries at once (/delete_my_data).
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from inference import StyleRequest

from .events import Chat, MessageRef, Person, PhotoRef

SELFIE_DELETABLE = 48 * 3600.0


class InputBuffer:
    """A downloaded photo. `release()` overwrites the bytes with zeros and drops them.

    What "released" means for the whole process, and what proves it
    (tests/proofs/test_memory.py reads the `darkroom run` process through /proc/PID/mem after
    the reply and after /delete_my_data, looking for slices of the photo file, its marker, rows
    of its decoded pixels and the network's float32 input made from them):

    * this buffer: zeroed here;
    * the decoded picture: decoded in a child process that exits (libjpeg's and Pillow's
      buffers, the full-size picture go with it); the pixels come back in anonymous shared
      memory that the job zeroes and unmaps (handlers/photos.py, inference/imageio.py);
    * copies made by libraries we do not own (the HTTP library's response body, an immutable
      `bytes`; numpy, OpenCV and onnxruntime working arrays; the encoded reply): `darkroom run`
      has glibc wipe every block freed through malloc (bot/safeguards/heap.py), and the job ends with a
      garbage collection (`forget_freed_copies`) because httpx's response sits in a reference
      cycle until then.
    Not covered, and not claimed: blocks of 512 bytes or less that CPython's own allocator
    keeps, glibc's per-thread cache of blocks of 1 KB or less, buffers a library still holds
    alive for reuse, kernel socket buffers, TLS library buffers (the proof runs over plain HTTP
    on loopback), the WeChat path (aiohttp: same mechanisms, no memory proof), and anything on
    a platform whose C library is not glibc. In the proof's scenario (Telegram through
    python-telegram-bot/httpx) the scan finds nothing of the photo anywhere in the process; the
    list above is what that does not promise for other libraries, versions or set-ups.
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytearray) -> None:
        self._data: bytearray | None = data

    @property
    def data(self) -> bytearray:
        if self._data is None:
            raise ValueError("this input has been released")
        return self._data

    @property
    def released(self) -> bool:
        return self._data is None

    def release(self) -> None:
        if self._data is not None:
            self._data[:] = bytes(len(self._data))
            self._data = None

    def __repr__(self) -> str:  # never show content
        return "InputBuffer(released)" if self._data is None else f"InputBuffer({len(self._data)} bytes)"


def forget_freed_copies() -> None:
    """Free now what reference cycles still hold after a job (httpx keeps the downloaded body
    in a cycle until the next collection), so that glibc wipes it now (bot/safeguards/heap.py)."""
    gc.collect()


@dataclass
class HeldPhotos:
    """Photo references waiting for something (consent, a style choice, the author's OK)."""

    person: Person
    chat: Chat
    photos: tuple[PhotoRef, ...]
    message: MessageRef | None  # the person's own message, to reply to or delete
    request: StyleRequest | None = None  # how to style it, known already when the caption named a style
    expires: float = 0.0
    prompt: MessageRef | None = None  # the message that asked (consent notice, picker)
    more_messages: tuple[MessageRef, ...] = ()  # the rest of an album
    requester: Person | None = None  # groups: who asked (may differ from the author)
    confirmed: bool = False  # the author confirmed that everyone pictured agreed
    sheet: MessageRef | None = None  # the preview sheet sent for it (deleted once a style is chosen)
    counted: int = 0  # photos its preview sheet counted against the hourly limit already
    remembering: asyncio.Future | None = field(default=None, repr=False)  # the sheet's row being written
    # What happens once the person agrees, set by whoever holds the photo for consent: so the
    # consent module completes the pending action without knowing (importing) photos or groups.
    resume: Callable[..., Awaitable[None]] | None = field(default=None, repr=False)


@dataclass
class HeldInput:
    """Downloaded inputs kept for `DARKROOM_INPUT_TTL` seconds after the reply."""

    person: Person
    chat: Chat
    buffers: list[InputBuffer]
    message: MessageRef | None
    expires: float
    payload: object = None  # what to do with the input once the person answers

    def release(self) -> None:
        for buffer in self.buffers:
            buffer.release()
        self.buffers.clear()


@dataclass
class GroupRequest:
    """Someone asked to style another person's photo in a group; only the author can agree."""

    token: str
    author: Person
    requester: Person
    held: HeldPhotos
    expires: float


@dataclass
class Memory:
    pending_ttl: float = 600.0
    clock: Callable[[], float] = time.monotonic
    awaiting_consent: dict[str, HeldPhotos] = field(default_factory=dict)
    awaiting_style: dict[str, HeldPhotos] = field(default_factory=dict)
    style_pictures: dict[str, HeldPhotos] = field(default_factory=dict)
    held_inputs: dict[str, HeldInput] = field(default_factory=dict)
    # Downloaded photos with several faces, waiting for "everyone pictured agreed".
    awaiting_confirmation: dict[str, HeldInput] = field(default_factory=dict)
    group_requests: dict[str, GroupRequest] = field(default_factory=dict)
    # The latest signed result per person, for "Full quality (file)" (DARKROOM_FILE_TTL).
    held_results: dict[str, HeldInput] = field(default_factory=dict)
    # The person's own photo messages in private chats that are still to be deleted when the bot
    # is done with them (DARKROOM_DELETE_SELFIE), whatever the outcome: styled, declined, refused
    # or erased while waiting. Per person: message → when it arrived.
    selfies: dict[str, dict[MessageRef, float]] = field(default_factory=dict)

    def track_selfies(self, person: str, messages) -> None:
        now = self.clock()
        mine = self.selfies.setdefault(person, {})
        for message in messages:
            if message is not None:
                mine[message] = now

    def take_selfies(self, person: str, messages=None) -> list[MessageRef]:
        """Stop tracking ``messages`` (all of the person's when None); returns those that were
        tracked, so each is deleted once."""
        mine = self.selfies.get(person)
        if not mine:
            return []
        if messages is None:
            taken = list(mine)
        else:
            taken = [m for m in messages if m is not None and m in mine]
        for message in taken:
            del mine[message]
        if not mine:
            del self.selfies[person]
        return taken

    # Until when a person who sends too much is not told again (one "slow down" a minute).
    quiet_until: dict[str, float] = field(default_factory=dict)

    def may_warn(self, person: str, interval: float = 60.0) -> bool:
        """True at most once per ``interval`` per person: whether to send a refusal or a
        "slow down" now, so that a flood of messages is not answered by a flood of notices."""
        now = self.clock()
        if self.quiet_until.get(person, 0.0) > now:
            return False
        self.quiet_until[person] = now + interval
        return True

    def hold(self, table: dict[str, HeldPhotos], held: HeldPhotos) -> HeldPhotos:
        held.expires = self.clock() + self.pending_ttl
        table[held.person.pseudonym] = held
        return held

    def take(self, table: dict[str, HeldPhotos], person: str) -> HeldPhotos | None:
        held = table.pop(person, None)
        if held is None or held.expires < self.clock():
            return None
        return held

    def peek(self, table: dict[str, HeldPhotos], person: str) -> HeldPhotos | None:
        held = table.get(person)
        if held is None or held.expires < self.clock():
            return None
        return held

    def keep_input(self, held: HeldInput, table: dict[str, HeldInput] | None = None) -> None:
        table = self.held_inputs if table is None else table
        previous = table.pop(held.person.pseudonym, None)
        if previous is not None and previous is not held:
            previous.release()
        table[held.person.pseudonym] = held

    def take_input(self, person: str, table: dict[str, HeldInput] | None = None) -> HeldInput | None:
        held = (self.held_inputs if table is None else table).pop(person, None)
        if held is None:
            return None
        if held.expires < self.clock():
            held.release()
            return None
        return held

    def add_group_request(self, author: Person, requester: Person, held: HeldPhotos) -> GroupRequest:
        token = secrets.token_urlsafe(9)
        request = GroupRequest(token, author, requester, held, self.clock() + self.pending_ttl)
        self.group_requests[token] = request
        return request

    def take_group_request(self, token: str) -> GroupRequest | None:
        request = self.group_requests.get(token)
        if request is None or request.expires < self.clock():
            self.group_requests.pop(token, None)
            return None
        return request

    def held_count(self, person: str) -> int:
        """How many things are held for ``person`` right now (shown by /privacy)."""
        now = self.clock()
        count = sum(
            1
            for table in (self.awaiting_consent, self.awaiting_style, self.style_pictures)
            if person in table and table[person].expires >= now
        )
        for inputs in (self.held_inputs, self.awaiting_confirmation, self.held_results):
            if person in inputs and inputs[person].expires >= now:
                count += 1
        count += sum(
            1
            for r in self.group_requests.values()
            if person in (r.author.pseudonym, r.requester.pseudonym) and r.expires >= now
        )
        return count

    def forget(self, person: str) -> int:
        """Drop everything held for ``person``; returns how many entries were released."""
        removed = 0
        for table in (self.awaiting_consent, self.awaiting_style, self.style_pictures):
            if table.pop(person, None) is not None:
                removed += 1
        for inputs in (self.held_inputs, self.awaiting_confirmation, self.held_results):
            held = inputs.pop(person, None)
            if held is not None:
                held.release()
                removed += 1
        for token, request in list(self.group_requests.items()):
            if person in (request.author.pseudonym, request.requester.pseudonym):
                del self.group_requests[token]
                removed += 1
        self.selfies.pop(person, None)  # erase deletes them first (Context.delete_selfies)
        self.quiet_until.pop(person, None)
        return removed

    def forget_chat(self, chat: str) -> int:
        """Drop everything held in one chat (the bot was removed from a group)."""
        removed = 0
        for table in (self.awaiting_consent, self.awaiting_style, self.style_pictures):
            for person, held in list(table.items()):
                if held.chat.pseudonym == chat:
                    del table[person]
                    removed += 1
        for inputs in (self.held_inputs, self.awaiting_confirmation, self.held_results):
            for person, kept in list(inputs.items()):
                if kept.chat.pseudonym == chat:
                    kept.release()
                    del inputs[person]
                    removed += 1
        for token, request in list(self.group_requests.items()):
            if request.held.chat.pseudonym == chat:
                del self.group_requests[token]
                removed += 1
        return removed

    def sweep(self) -> int:
        """Release everything that has expired; run periodically by the bot."""
        now = self.clock()
        removed = 0
        for table in (self.awaiting_consent, self.awaiting_style, self.style_pictures):
            for person, held in list(table.items()):
                if held.expires < now:
                    del table[person]
                    removed += 1
        for inputs in (self.held_inputs, self.awaiting_confirmation, self.held_results):
            for person, kept in list(inputs.items()):
                if kept.expires < now:
                    kept.release()
                    del inputs[person]
                    removed += 1
        for token, request in list(self.group_requests.items()):
            if request.expires < now:
                del self.group_requests[token]
                removed += 1
        # Telegram lets a bot delete a message for 48 hours: a reference older than that is useless.
        for person, mine in list(self.selfies.items()):
            for message in [m for m, seen in mine.items() if seen < now - SELFIE_DELETABLE]:
                del mine[message]
            if not mine:
                del self.selfies[person]
        for person, until in list(self.quiet_until.items()):
            if until < now:
                del self.quiet_until[person]
        return removed
