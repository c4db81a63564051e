"""What every handler is given: the platform the event came from and the shared services."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field

from inference import AsyncEngine, Catalogue

from .events import Address, Chat, MessageRef
from .memory import Memory
from .ports import DeliveryFailed, JobQueue, Platform, Store, Styler
from .replies import DeleteMessage, EditText, Reply, SendText

log = logging.getLogger("darkroom.handlers")


@dataclass(frozen=True)
class ConversationSettings:
    # These defaults are also the defaults of the DARKROOM_* settings the conversation is built
    # from (bot/settings/__init__.py reads them from here): change one here, then run
    # `python -m bot.settings --write` to regenerate .env.example and the README table.
    min_age: int = 16
    input_ttl: int = 0  # seconds an input stays in memory after the reply
    reply_ttl: int = 0  # seconds after which the bot deletes its own styled-photo messages
    delete_selfie: bool = True
    operator: str = ""
    default_style: str | None = None  # used by the group "/style" with no name
    max_input_bytes: int = 20 * 1024 * 1024
    album_limit: int = 4
    pending_ttl: int = 600  # how long a photo reference may wait for consent or a choice
    version: str = ""  # software version, shown by /privacy
    webapp_url: str = ""  # the on-device page (DARKROOM_WEBAPP_URL); empty: not offered
    marked_platforms: frozenset[str] = frozenset()  # whose results carry the visible AI mark
    file_ttl: int = 60  # seconds the latest result stays in memory for "Full quality (file)"; 0: no button
    preview_sheet: bool = True  # the person's photo in every style, with the picker (private chats)


@dataclass
class Context:
    platform: Platform
    store: Store
    queue: JobQueue
    engine: AsyncEngine
    catalogue: Catalogue
    memory: Memory
    settings: ConversationSettings = field(default_factory=ConversationSettings)
    # Where photos are styled: None runs the pipeline here, with this context's engine.
    styler: Styler | None = None

    async def edit_or_send(self, chat: Chat, target: MessageRef | None, text: str, buttons=()) -> MessageRef | None:
        """Replace ``target``'s text where the platform can edit messages, else say it anew."""
        if target is not None and self.platform.can_edit:
            return await self.send(chat, EditText(target, text, buttons))
        return await self.send(chat, SendText(text, buttons))

    def track_selfies(self, chat: Chat, person: str, messages) -> None:
        """Remember the person's photo messages in a private chat, to delete them once the bot
        is done with them (only with DARKROOM_DELETE_SELFIE, where the platform can delete)."""
        if chat.private and self.settings.delete_selfie and self.platform.can_delete_messages:
            self.memory.track_selfies(person, messages)

    async def delete_selfies(self, person: str, messages=None) -> int:
        """The bot is done with these photo messages of ``person`` (all of them when None):
        delete those still tracked. Returns how many were deleted."""
        taken = self.memory.take_selfies(person, messages)
        for message in taken:
            await self.send(message.chat, DeleteMessage(message))
        return len(taken)

    async def send(self, chat: Chat | Address, reply: Reply) -> MessageRef | None:
        """Send a reply; a delivery failure is logged (no personal data) and swallowed, because
        the person cannot be told about a message that cannot reach them."""
        address = chat.address if isinstance(chat, Chat) else chat
        try:
            return await self.platform.send(address, reply)
        except DeliveryFailed as exc:
            log.warning("could not deliver %s on %s: %s", type(reply).__name__, self.platform.name, exc)
            return None


def where(exc: BaseException) -> str:
    """Where an exception was raised (file:line in function), without its message: messages
    from libraries can carry URLs, tokens or ids, frames cannot."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
