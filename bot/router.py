"""The async message router: neutral events from any adapter to the handler that answers them.

Each person's events in each chat go to their own lane, handled in order, with a bounded
backlog; adapters hand an event over and return at once. So one person's flood (or a chat that
Telegram answers slowly) only ever delays that person.

It also makes every choice answerable by typing: when a reply with buttons goes to a chat, the
words that choose each button are remembered for that chat (in memory, for a few minutes), and a
private text matching one of them is handled as the press it stands for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace

import handlers
from handlers.context import Context, where
from handlers.events import (
    Address,
    ButtonEvent,
    ChatKind,
    CommandEvent,
    Event,
    MembershipEvent,
    MessageRef,
    PhotoEvent,
    TextEvent,
    UnsupportedEvent,
)
from handlers.ports import Platform
from handlers.registry import Command, Handler, command_routes, merge
from handlers.replies import AnswerButton, Reply, SendText
from handlers.texts import t

log = logging.getLogger("darkroom.router")


def _resolve(done: asyncio.Future | None) -> None:
    if done is not None and not done.done():
        done.set_result(None)


def fold(text: str) -> str:
    return "".join(text.lower().replace("-", "").replace("_", "").split())


@dataclass
class Choices:
    by_word: dict[str, str]
    expires: float


class ChoiceTrackingPlatform:
    """A platform seen through the router: remembers the typed answers of every keyboard sent."""

    def __init__(self, inner: Platform, router: Router) -> None:
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


LANE_LIMIT = 20  # events one person may have waiting in one chat before more are dropped
ERASURE = "delete_my_data"
NOTICE_INTERVAL = 60.0  # at most one "slow down" per person per this many seconds


@dataclass(eq=False)
class _Waiting:
    event: Event
    ctx: Context
    done: asyncio.Future | None  # set when a caller waits for this event to be handled


@dataclass(eq=False)
class Lane:
    """One person's events in one chat, handled one at a time, in arrival order. It exists only
    while it has work: the task that drains it removes it when the backlog is empty."""

    backlog: deque[_Waiting] = field(default_factory=deque)
    task: asyncio.Task | None = None


class Router:
    def __init__(
        self,
        base: Context,
        routes=handlers.ROUTES,
        commands: tuple[Command, ...] = handlers.COMMANDS,
        unknown: Command = handlers.UNKNOWN,
        choice_ttl: float = 600.0,
        lane_limit: int = LANE_LIMIT,
    ) -> None:
        """``base`` carries the shared services; its platform is replaced per adapter. A command,
        button or event routed twice raises `handlers.registry.DuplicateRoute` here, at start-up."""
        self._base = base
        self._contexts: dict[str, Context] = {}
        self._choices: dict[Address, Choices] = {}
        self._lanes: dict[tuple[Address, str], Lane] = {}
        self._notices: set[asyncio.Task] = set()
        self._closed = False
        self._choice_ttl = choice_ttl
        self.lane_limit = lane_limit
        self.dropped = 0  # events dropped past a lane's bound, since start (for the operator)
        # Routed by (name, chat kind), and the rest by chat kind, as aiogram's chat-type filters do.
        self.commands: dict[tuple[str, ChatKind], Handler] = command_routes(commands)
        self.unknown = unknown.handlers
        self.routes = merge(routes)
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

    # -- lanes -----------------------------------------------------------------------------

    async def enqueue(self, event: Event, platform: Platform) -> None:
        """The adapters' entry point: hand ``event`` to its lane and return at once, so that
        nothing an adapter shares between people (python-telegram-bot's concurrent-update
        slots, an HTTP request) is ever held while one person's backlog is worked through."""
        self._enqueue(event, platform, None)

    async def dispatch(self, event: Event, platform: Platform) -> None:
        """Hand ``event`` to its lane and wait until it has been handled (or dropped)."""
        done = asyncio.get_running_loop().create_future()
        self._enqueue(event, platform, done)
        await done

    def _enqueue(self, event: Event, platform: Platform, done: asyncio.Future | None) -> None:
        """Events of one person in one chat are handled one at a time, in arrival order (so "a
        photo, then /style_from on it" is never read the other way round); different people
        never wait for each other. A lane holds at most ``lane_limit`` waiting events: past
        that, new ones are dropped and the person is asked, once a minute at most, to slow down."""
        if self._closed:
            _resolve(done)
            return
        ctx = self.context(platform)
        key = (event.chat.address, event.person.pseudonym)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane()
        if self._never_dropped(event):
            # What waits behind an erasure would only act for a person about to be erased.
            for waiting in lane.backlog:
                _resolve(waiting.done)
            lane.backlog.clear()
        elif len(lane.backlog) >= self.lane_limit:
            self.dropped += 1
            _resolve(done)
            self._slow_down(event, ctx)
            return
        lane.backlog.append(_Waiting(event, ctx, done))
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(key, lane), name="darkroom-lane")

    async def _drain(self, key: tuple[Address, str], lane: Lane) -> None:
        try:
            while lane.backlog:
                waiting = lane.backlog.popleft()
                try:
                    await self._dispatch_safely(waiting.event, waiting.ctx)
                finally:
                    _resolve(waiting.done)
        finally:
            for waiting in lane.backlog:  # only when cancelled (shutdown)
                _resolve(waiting.done)
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    def _never_dropped(self, event: Event) -> bool:
        """Erasure always works, however much else the person sent (under any of its names);
        the bot's removal from a group always clears the group."""
        if isinstance(event, CommandEvent):
            kind = event.chat.kind
            erase = self.commands.get((ERASURE, kind))
            return erase is not None and self.commands.get((event.name, kind)) is erase
        return isinstance(event, MembershipEvent)

    def _slow_down(self, event: Event, ctx: Context) -> None:
        person = event.person
        if not self.memory.may_warn(person.pseudonym, NOTICE_INTERVAL):
            return
        log.info("a person is sending faster than they can be answered; some messages were dropped")
        task = asyncio.create_task(ctx.send(event.chat, SendText(t("flood.slow_down", person.language))))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    @property
    def backlog(self) -> int:
        """Events waiting in all lanes (not counting those being handled)."""
        return sum(len(lane.backlog) for lane in self._lanes.values())

    async def close(self, timeout: float) -> None:
        """Take no more events, drop what waits, give the events being handled ``timeout``
        seconds, then cancel them."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for lane in self._lanes.values():
            for waiting in lane.backlog:
                _resolve(waiting.done)
            lane.backlog.clear()
        tasks += list(self._notices)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, timeout))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

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
        kind = event.chat.kind
        if isinstance(event, CommandEvent):
            handler = self.commands.get((event.name, kind)) or self.unknown.get(kind)
        elif isinstance(event, ButtonEvent):
            handler = self.routes.buttons.get(event.data.split(":", 1)[0])
            if handler is None:
                await ctx.send(event.chat, AnswerButton(event.answer_handle))
                return
        elif isinstance(event, PhotoEvent):
            handler = self.routes.photo.get(kind)
        elif isinstance(event, TextEvent):
            handler = self.routes.text.get(kind)
        elif isinstance(event, MembershipEvent):
            handler = self.routes.membership
        elif isinstance(event, UnsupportedEvent):
            handler = self.routes.unsupported.get(kind)
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
