"""Everything the conversation holds about a person between two messages: in memory only.

Photo *references* wait here for consent or a style choice (at most `pending_ttl`, 10 minutes);
downloaded photo *bytes* wait here only when the operator set `DARKROOM_INPUT_TTL` so that
"another style" works without re-sending. Every entry expires on its own, and `forget` drops
all of a person's entries at once (/delete_my_data).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from .events import Chat, MessageRef, Person, PhotoRef


class InputBuffer:
    """A downloaded photo. `release()` overwrites the bytes with zeros and drops them, so a
    released input is gone from this process's memory, not merely unreferenced."""

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


@dataclass
class Request:
    """How to style: a catalogue style (or the person's own style picture) and options."""

    style: str
    strength: float = 1.0
    keep_colours: bool = False


@dataclass
class HeldPhotos:
    """Photo references waiting for something (consent, a style choice, the author's OK)."""

    person: Person
    chat: Chat
    photos: tuple[PhotoRef, ...]
    message: MessageRef | None  # the person's own message, to reply to or delete
    request: Request | None = None  # known already when the caption named a style
    expires: float = 0.0
    prompt: MessageRef | None = None  # the message that asked (consent notice, picker)
    more_messages: tuple[MessageRef, ...] = ()  # the rest of an album
    requester: Person | None = None  # groups: who asked (may differ from the author)
    confirmed: bool = False  # the author confirmed that everyone pictured agreed


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
        for inputs in (self.held_inputs, self.awaiting_confirmation):
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
        for inputs in (self.held_inputs, self.awaiting_confirmation):
            held = inputs.pop(person, None)
            if held is not None:
                held.release()
                removed += 1
        for token, request in list(self.group_requests.items()):
            if person in (request.author.pseudonym, request.requester.pseudonym):
                del self.group_requests[token]
                removed += 1
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
        for inputs in (self.held_inputs, self.awaiting_confirmation):
            for person, held in list(inputs.items()):
                if held.chat.pseudonym == chat:
                    held.release()
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
        for inputs in (self.held_inputs, self.awaiting_confirmation):
            for person, held in list(inputs.items()):
                if held.expires < now:
                    held.release()
                    del inputs[person]
                    removed += 1
        for token, request in list(self.group_requests.items()):
            if request.expires < now:
                del self.group_requests[token]
                removed += 1
        for person, until in list(self.quiet_until.items()):
            if until < now:
                del self.quiet_until[person]
        return removed
