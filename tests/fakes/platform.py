"""A harness for handler tests: neutral events in, neutral replies recorded, no platform at all.

The `harness` fixture (tests/conftest.py) builds one.

Storage is the real SQLite store (in a temp dir), the queue is the real fair queue and the engine
is the real engine; only the platform is a recording fake.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from bot.jobs import FairQueue
from bot.router import Router
from bot.storage.store import Storage
from handlers.context import Context
from handlers.events import (
    Address,
    ButtonEvent,
    Chat,
    ChatKind,
    CommandEvent,
    Membership,
    MembershipEvent,
    MessageRef,
    Person,
    PhotoEvent,
    PhotoRef,
    TextEvent,
    UnsupportedEvent,
)
from handlers.ports import FetchFailed, PhotoTooLarge
from handlers.replies import Reply


@dataclass
class Sent:
    chat: Address
    reply: Reply
    ref: MessageRef | None


@dataclass
class FakePlatform:
    name: str = "fake"
    has_buttons: bool = True
    can_edit: bool = True
    can_delete_messages: bool = True
    photos: dict[str, bytes] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)  # person pseudonyms
    sent: list[Sent] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    buffers: list[bytearray] = field(default_factory=list)  # every buffer handed out, to check release
    forgotten: list[str] = field(default_factory=list)
    delays: dict[type, float] = field(default_factory=dict)  # reply type -> seconds its delivery takes
    started: dict[type, asyncio.Event] = field(default_factory=dict)  # set when a delayed delivery begins
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def send(self, chat: Address, reply: Reply) -> MessageRef | None:
        delay = self.delays.get(type(reply))
        if not delay:
            return self._deliver(chat, reply)
        # Like an upload the platform has begun: cancelling the caller does not stop it, the
        # message still lands in the chat; only the caller no longer learns where.
        self.started.setdefault(type(reply), asyncio.Event()).set()

        async def later() -> MessageRef:
            await asyncio.sleep(delay)
            return self._deliver(chat, reply)

        return await asyncio.shield(asyncio.ensure_future(later()))

    def _deliver(self, chat: Address, reply: Reply) -> MessageRef:
        ref = MessageRef(chat, str(next(self._ids)))
        self.sent.append(Sent(chat, reply, ref))
        return ref

    async def fetch(self, photo: PhotoRef, max_bytes: int) -> bytearray:
        self.fetched.append(photo.platform_ref)
        if photo.platform_ref not in self.photos:
            raise FetchFailed("gone")
        data = self.photos[photo.platform_ref]
        if len(data) > max_bytes:
            raise PhotoTooLarge()
        buffer = bytearray(data)
        self.buffers.append(buffer)
        return buffer

    async def is_admin(self, chat: Chat, person: Person) -> bool:
        return person.pseudonym in self.admins

    def forget(self, person: Person) -> None:
        self.forgotten.append(person.pseudonym)

    # -- looking at what was said --------------------------------------------------------------

    def replies(self, kind: type | None = None) -> list[Reply]:
        return [s.reply for s in self.sent if kind is None or isinstance(s.reply, kind)]

    def texts(self) -> list[str]:
        return [getattr(s.reply, "text", "") for s in self.sent if hasattr(s.reply, "text")]

    def last(self, kind: type) -> Reply:
        found = self.replies(kind)
        assert found, f"no {kind.__name__} was sent; sent: {[type(s.reply).__name__ for s in self.sent]}"
        return found[-1]

    def button_data(self) -> list[str]:
        data = []
        for reply in self.replies():
            for row in getattr(reply, "buttons", ()):
                data += [b.data for b in row]
        return data


class Harness:
    def __init__(self, ctx: Context, router: Router, platform: FakePlatform, storage: Storage, queue: FairQueue):
        self.ctx = ctx
        self.router = router
        self.platform = platform
        self.storage = storage
        self.queue = queue
        self._refs = itertools.count(1)
        self._messages = itertools.count(5000)

    def person(self, name: str = "alice", language: str = "en") -> Person:
        return Person(pseudonym=f"p-{name}", language=language, address=Address("fake", f"id-{name}"))

    def private(self, person: Person) -> Chat:
        return Chat(pseudonym=f"c-{person.pseudonym}", kind=ChatKind.PRIVATE, address=Address("fake", f"chat-{person.pseudonym}"))

    def group(self, name: str = "g1") -> Chat:
        return Chat(pseudonym=f"c-{name}", kind=ChatKind.GROUP, address=Address("fake", f"chat-{name}"))

    def message(self, chat: Chat) -> MessageRef:
        return MessageRef(chat.address, str(next(self._messages)))

    def photo_ref(self, data: bytes, size: int | None = None, mime: str = "image/jpeg") -> PhotoRef:
        ref = f"file-{next(self._refs)}"
        self.platform.photos[ref] = data
        return PhotoRef(ref, size=len(data) if size is None else size, mime=mime)

    async def dispatch(self, event) -> None:
        await self.router.dispatch(event, self.platform)

    async def photo(self, person: Person, data: bytes | list[bytes], chat: Chat | None = None, caption: str = "") -> PhotoEvent:
        chat = chat or self.private(person)
        items = data if isinstance(data, list) else [data]
        event = PhotoEvent(person, chat, self.message(chat), photos=tuple(self.photo_ref(d) for d in items), caption=caption)
        await self.dispatch(event)
        return event

    async def command(self, person: Person, text: str, chat: Chat | None = None, reply_to: PhotoEvent | None = None) -> CommandEvent:
        chat = chat or self.private(person)
        name, _, args = text.lstrip("/").partition(" ")
        event = CommandEvent(
            person,
            chat,
            self.message(chat),
            name=name,
            args=args,
            replied_photos=reply_to.photos if reply_to else (),
            replied_author=reply_to.person if reply_to else None,
            replied_message=reply_to.message if reply_to else None,
            **({"replied_from_someone_else": True} if getattr(reply_to, "from_someone_else", False) else {}),
        )
        await self.dispatch(event)
        return event

    def shown(self, prefix: str) -> str:
        """The data of the last button shown whose data starts with ``prefix``."""
        for reply in reversed(self.platform.replies()):
            for row in getattr(reply, "buttons", ()):
                for button in row:
                    if button.data == prefix or button.data.startswith(prefix + ":"):
                        return button.data
        raise AssertionError(f"no button {prefix!r} was shown")

    async def press(self, person: Person, data: str, chat: Chat | None = None) -> None:
        chat = chat or self.private(person)
        await self.dispatch(ButtonEvent(person, chat, self.message(chat), data=data, answer_handle="cb"))

    async def text(self, person: Person, text: str, chat: Chat | None = None) -> None:
        chat = chat or self.private(person)
        await self.dispatch(TextEvent(person, chat, self.message(chat), text=text))

    async def unsupported(self, person: Person, what: str = "document") -> None:
        chat = self.private(person)
        await self.dispatch(UnsupportedEvent(person, chat, self.message(chat), what=what))

    async def removed_from(self, chat: Chat, by: Person) -> None:
        await self.dispatch(MembershipEvent(by, chat, None, change=Membership.BOT_REMOVED))

    def consent_data(self, choice: str, person: Person, language: str | None = None) -> str:
        """What the consent button for ``choice`` carries under the notice as it reads now."""
        from handlers import consent

        buttons = [b for row in consent.consent_buttons(self.ctx.settings, language or person.language) for b in row]
        return next(b.data for b in buttons if b.data.split(":")[1] == choice)

    async def agree(self, person: Person, chat: Chat | None = None) -> None:
        await self.press(person, self.consent_data("agree", person), chat)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until the queue has nothing waiting or running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.queue.waiting or self.queue.running:
            if loop.time() > deadline:
                raise AssertionError("the queue did not drain")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.02)
