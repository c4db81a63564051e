"""The async message router: neutral events from any adapter to the handler that answers them.

It also makes every choice answerable by typing: when a reply with buttons goes to a chat, the
words that choose each button are remembered for that chat (in memory, for a few minutes), and a
private text matching one of them is handled as the press it stands for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

import handlers
from handlers.context import Context, where
from handlers.events import (
    Address,
    ButtonEvent,
    CommandEvent,
    Event,
    MembershipEvent,
    MessageRef,
    PhotoEvent,
    TextEvent,
    UnsupportedEvent,
)
from handlers.ports import Platform
from handlers.registry import Handler
from handlers.replies import AnswerButton, Reply, SendText
from handlers.texts import t

log = logging.getLogger("darkroom.router")


def fold(text: str) -> str:
    return "".join(text.lower().replace("-", "").replace("_", "").split())


@dataclass
class Choices:
    by_word: dict[str, str]
    expires: float


class ChoiceTrackingPlatform:
    """A platform seen through the router: remembers the typed answers of every keyboard sent."""

    def __init__(self, inner: Platform, router: "Router") -> None:
        self._inner = inner
        self._router = router
        self.name = inner.name
        self.has_buttons = inner.has_buttons
        self.can_edit = inner.can_edit
        self.can_delete_messages = inner.can_delete_messages

    async def send(self, chat: Address, reply: Reply) -> MessageRef | None:
        buttons = getattr(reply, "buttons", ())
        result = await self._inner.send(chat, reply)
        if buttons:
            self._router.remember_choices(chat, buttons)
        return result

    async def fetch(self, photo, max_bytes):
        return await self._inner.fetch(photo, max_bytes)

    async def is_admin(self, chat, person) -> bool:
        return await self._inner.is_admin(chat, person)

    def forget(self, person) -> None:
        self._inner.forget(person)


class Router:
    def __init__(self, base: Context, routes=handlers.ROUTES, choice_ttl: float = 600.0) -> None:
        """``base`` carries the shared services; its platform is replaced per adapter."""
        self._base = base
        self._contexts: dict[str, Context] = {}
        self._choices: dict[Address, Choices] = {}
        self._chat_locks: dict[Address, tuple[asyncio.Lock, int]] = {}
        self._choice_ttl = choice_ttl
        self.commands: dict[str, Handler] = {}
        self.buttons: dict[str, Handler] = {}
        self.photo = self.text = self.membership = self.unsupported = None
        for r in routes:
            self.commands.update(r.commands)
            self.buttons.update(r.buttons)
            self.photo = r.photo or self.photo
            self.text = r.text or self.text
            self.membership = r.membership or self.membership
            self.unsupported = r.unsupported or self.unsupported
        self._sweeper: asyncio.Task | None = None

    @property
    def memory(self):
        return self._base.memory

    def context(self, platform: Platform) -> Context:
        ctx = self._contexts.get(platform.name)
        if ctx is None:
            ctx = replace(self._base, platform=ChoiceTrackingPlatform(platform, self))
            self._contexts[platform.name] = ctx
        return ctx

    async def dispatch(self, event: Event, platform: Platform) -> None:
        """Handle one event. Events of one chat are handled one at a time, in arrival order
        (adapters may deliver them concurrently): "a photo, then /style_from on it" must not be
        read the other way round. Different chats never wait for each other."""
        ctx = self.context(platform)
        key = event.chat.address
        lock, users = self._chat_locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._chat_locks[key] = (lock, users + 1)
        try:
            async with lock:
                await self._dispatch_safely(event, ctx)
        finally:
            lock, users = self._chat_locks[key]
            if users <= 1:
                del self._chat_locks[key]
            else:
                self._chat_locks[key] = (lock, users - 1)

    async def _dispatch_safely(self, event: Event, ctx: Context) -> None:
        try:
            await self._dispatch(event, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("handling a %s failed: %s at %s", type(event).__name__, type(exc).__name__, where(exc))
            try:
                if isinstance(event, ButtonEvent):
                    await ctx.send(event.chat, AnswerButton(event.answer_handle))
                await ctx.send(event.chat, SendText(t("error.generic", event.person.language)))
            except Exception:
                pass

    async def _dispatch(self, event: Event, ctx: Context) -> None:
        if isinstance(event, TextEvent) and event.chat.private:
            data = self.typed_choice(event.chat.address, event.text)
            if data is not None:
                event = ButtonEvent(event.person, event.chat, None, data=data, answer_handle=None)
        if isinstance(event, CommandEvent):
            handler = self.commands.get(event.name, handlers.unknown_command)
        elif isinstance(event, ButtonEvent):
            handler = self.buttons.get(event.data.split(":", 1)[0])
            if handler is None:
                await ctx.send(event.chat, AnswerButton(event.answer_handle))
                return
        elif isinstance(event, PhotoEvent):
            handler = self.photo
        elif isinstance(event, TextEvent):
            handler = self.text
        elif isinstance(event, MembershipEvent):
            handler = self.membership
        elif isinstance(event, UnsupportedEvent):
            handler = self.unsupported
        else:
            handler = None
        if handler is not None:
            await handler(event, ctx)

    # -- typed choices ---------------------------------------------------------------------

    def remember_choices(self, chat: Address, keyboard) -> None:
        by_word: dict[str, str] = {}
        for row in keyboard:
            for button in row:
                for word in (*button.typed, button.label):
                    by_word.setdefault(fold(word), button.data)
        self._choices[chat] = Choices(by_word, time.monotonic() + self._choice_ttl)

    def typed_choice(self, chat: Address, text: str) -> str | None:
        choices = self._choices.get(chat)
        if choices is None or choices.expires < time.monotonic():
            self._choices.pop(chat, None)
            return None
        return choices.by_word.get(fold(text))

    # -- housekeeping ----------------------------------------------------------------------

    def start(self, interval: float = 5.0) -> None:
        self._sweeper = asyncio.create_task(self._sweep(interval), name="darkroom-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def _sweep(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            released = self.memory.sweep()
            now = time.monotonic()
            for chat in [c for c, ch in self._choices.items() if ch.expires < now]:
                del self._choices[chat]
            if released:
                log.debug("released %d expired item(s) from memory", released)
