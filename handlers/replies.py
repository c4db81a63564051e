"""Neutral replies: what the conversation wants said or done in a chat.

A platform without buttons (WeChat) shows each button as a line to type: every `Button` carries
the words that choose it by typing, and the router accepts those words as a press.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import MessageRef


@dataclass(frozen=True)
class Button:
    label: str
    data: str  # what comes back in ButtonEvent.data; never personal data (max 64 bytes)
    typed: tuple[str, ...] = ()  # typed answers that choose this button; the first is shown
    web_app: str = ""  # opens the on-device page at this URL instead (a link where there are no buttons)

    def __post_init__(self) -> None:
        if len(self.data.encode()) > 64:
            raise ValueError("button data is limited to 64 bytes")


Keyboard = tuple[tuple[Button, ...], ...]


@dataclass(frozen=True)
class Reply:
    pass


@dataclass(frozen=True)
class SendText(Reply):
    text: str
    buttons: Keyboard = ()
    reply_to: MessageRef | None = None


@dataclass(frozen=True)
class EditText(Reply):
    target: MessageRef
    text: str
    buttons: Keyboard = ()


@dataclass(frozen=True)
class OutPhoto:
    jpeg: bytes = field(repr=False)
    caption: str = ""


@dataclass(frozen=True)
class SendPhotos(Reply):
    """One photo, or an album of several answered as one."""

    photos: tuple[OutPhoto, ...]
    reply_to: MessageRef | None = None
    buttons: Keyboard = ()


@dataclass(frozen=True)
class SendDocument(Reply):
    data: bytes = field(repr=False)
    filename: str = "document"
    caption: str = ""


@dataclass(frozen=True)
class DeleteMessage(Reply):
    target: MessageRef


@dataclass(frozen=True)
class ChatAction(Reply):
    action: str = "upload_photo"


@dataclass(frozen=True)
class AnswerButton(Reply):
    """Acknowledge a button press (a small notice on Telegram; nothing on WeChat)."""

    handle: str | None
    text: str = ""
    alert: bool = False
