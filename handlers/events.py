"""Neutral events: what happened in a chat, with no platform type in sight.

Adapters build these from Telegram updates or WeChat callbacks. Raw platform identifiers travel
only inside opaque `Address` values (``repr=False``, so an event that reaches a log line does not
carry them); handlers compare people by pseudonym and hand addresses back to the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ChatKind(Enum):
    PRIVATE = "private"
    GROUP = "group"


@dataclass(frozen=True)
class Address:
    """Where a platform can reach a chat or a person. Opaque to handlers."""

    platform: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Person:
    pseudonym: str  # HMAC-SHA256 of platform and user id: the only identity handlers use
    language: str  # "en" or "zh"
    address: Address = field(repr=False, compare=False)


@dataclass(frozen=True)
class Chat:
    pseudonym: str  # HMAC of platform and chat id: the key for per-group settings
    kind: ChatKind
    address: Address = field(repr=False, compare=False)

    @property
    def private(self) -> bool:
        return self.kind is ChatKind.PRIVATE


@dataclass(frozen=True)
class MessageRef:
    """A message in a chat, so it can be edited, deleted or replied to."""

    chat: Address = field(repr=False)
    message_id: str = field(repr=False)


@dataclass(frozen=True)
class PhotoRef:
    """A photo the platform holds for us. Only the reference: nothing is downloaded until
    the person's consent is on record and the photo's job starts."""

    platform_ref: str = field(repr=False)
    size: int | None = None  # bytes, when the platform says
    mime: str = "image/jpeg"
    is_document: bool = False


@dataclass(frozen=True)
class Event:
    person: Person
    chat: Chat
    message: MessageRef | None


@dataclass(frozen=True)
class CommandEvent(Event):
    name: str  # without the slash, lower case: "start", "delete_my_data", ...
    args: str = field(default="", repr=False)
    # When the command is a reply to a photo (group use: "/style" on someone's picture):
    replied_photos: tuple[PhotoRef, ...] = ()
    replied_author: Person | None = None
    replied_message: MessageRef | None = None
    # The replied photo was forwarded from someone other than its sender (see PhotoEvent).
    replied_from_someone_else: bool = False


@dataclass(frozen=True)
class TextEvent(Event):
    text: str = field(default="", repr=False)


@dataclass(frozen=True)
class PhotoEvent(Event):
    photos: tuple[PhotoRef, ...] = ()
    caption: str = field(default="", repr=False)
    more_messages: tuple[MessageRef, ...] = ()  # the other messages of an album
    # Forwarded from another person, a hidden account, a group or a channel: the sender is not
    # the photo's author, so the sender's consent cannot stand for it. A photo the person
    # forwards from their own message is theirs (False).
    from_someone_else: bool = False


@dataclass(frozen=True)
class ButtonEvent(Event):
    data: str = ""
    # Platform handle for acknowledging the press (Telegram's callback query id).
    answer_handle: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class UnsupportedEvent(Event):
    """Something we cannot style (a sticker, a voice message, a non-image document)."""

    what: str = "message"


class Membership(Enum):
    BOT_REMOVED = "bot_removed"  # the bot left or was removed from a group
    SUBSCRIBED = "subscribed"  # WeChat: the person followed the account
    UNSUBSCRIBED = "unsubscribed"  # WeChat: the person unfollowed


@dataclass(frozen=True)
class MembershipEvent(Event):
    change: Membership = Membership.BOT_REMOVED
