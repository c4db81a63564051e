"""What the conversation answers, declared as data: the commands (one table, handlers/commands.py)
and, per handler module, its buttons and the photo, text and membership events it takes.

Private and group variants are routed by chat kind (as aiogram's `F.chat.type` filters do), so a
handler does one thing and never calls into another module to handle the other kind of chat.
Two routes for the same thing are refused when the router is built (`DuplicateRoute`): a second
registration must never silently win.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .events import ChatKind

Handler = Callable[..., Awaitable[None]]
PRIVATE, GROUP = ChatKind.PRIVATE, ChatKind.GROUP
EVERYWHERE = (PRIVATE, GROUP)


class DuplicateRoute(ValueError):
    """Two routes answer the same command, typed word, button or event in the same kind of chat."""


@dataclass(frozen=True)
class Command:
    """One command: its name, the key of its menu description in handlers/texts.py, the handler
    for each kind of chat it answers in, other names it goes by, and the words that stand for it
    where commands are typed (WeChat has no command menu).

    ``handler`` answers in every kind of chat; ``private`` and ``group`` answer in that kind only
    (and win over ``handler`` there)."""

    name: str
    description: str
    handler: Handler | None = None
    private: Handler | None = None
    group: Handler | None = None
    names: tuple[str, ...] = ()  # other slash names for the same command ("forget_me")
    typed: tuple[str, ...] = ()  # whole messages that mean this command ("删除我的数据")
    typed_with_args: tuple[str, ...] = ()  # first words that mean it when words follow ("风格 水墨")
    in_menu: bool = True  # shown in Telegram's command menu

    @property
    def handlers(self) -> Mapping[ChatKind, Handler]:
        by_kind = {kind: self.handler for kind in EVERYWHERE if self.handler is not None}
        by_kind.update({kind: fn for kind, fn in ((PRIVATE, self.private), (GROUP, self.group)) if fn is not None})
        return MappingProxyType(by_kind)

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.names)


def command_routes(commands: Iterable[Command]) -> dict[tuple[str, ChatKind], Handler]:
    """Each (name, chat kind) to its handler; a name routed twice in one kind of chat is refused."""
    routes: dict[tuple[str, ChatKind], Handler] = {}
    for command in commands:
        for name in command.all_names:
            for kind, handler in command.handlers.items():
                if (name, kind) in routes:
                    raise DuplicateRoute(f"command /{name} is routed twice in {kind.value} chats")
                routes[(name, kind)] = handler
    return routes


def typed_words(commands: Iterable[Command], with_args: bool = False) -> dict[str, str]:
    """The typed words (lower case) and the command each stands for; a word for two is refused."""
    words: dict[str, str] = {}
    for command in commands:
        for word in command.typed_with_args if with_args else command.typed:
            key = word.lower()
            if key in words:
                raise DuplicateRoute(f"the typed word {key!r} stands for /{words[key]} and /{command.name}")
            words[key] = command.name
    return words


@dataclass
class Routes:
    """What one handler module answers besides commands. Photos, texts and unsupported messages
    are routed by chat kind; a kind with no handler is ignored (in groups the bot acts on
    commands and /style captions only)."""

    buttons: dict[str, Handler] = field(default_factory=dict)  # by prefix before ":"
    photo: dict[ChatKind, Handler] = field(default_factory=dict)
    text: dict[ChatKind, Handler] = field(default_factory=dict)
    unsupported: dict[ChatKind, Handler] = field(default_factory=dict)
    membership: Handler | None = None

    def button(self, prefix: str):
        def register(fn: Handler) -> Handler:
            _add(self.buttons, prefix, fn, f"button {prefix!r}")
            return fn

        return register

    def on_photo(self, *kinds: ChatKind):
        return self._by_kind(self.photo, "photo", kinds)

    def on_text(self, *kinds: ChatKind):
        return self._by_kind(self.text, "text", kinds)

    def on_unsupported(self, *kinds: ChatKind):
        return self._by_kind(self.unsupported, "unsupported message", kinds)

    def on_membership(self, fn: Handler) -> Handler:
        if self.membership is not None:
            raise DuplicateRoute("membership changes are routed twice")
        self.membership = fn
        return fn

    @staticmethod
    def _by_kind(table: dict[ChatKind, Handler], what: str, kinds: tuple[ChatKind, ...]):
        def register(fn: Handler) -> Handler:
            for kind in kinds or EVERYWHERE:
                _add(table, kind, fn, f"{what} in {kind.value} chats")
            return fn

        return register


def _add(table: dict, key, fn: Handler, what: str) -> None:
    if key in table:
        raise DuplicateRoute(f"{what} is routed twice")
    table[key] = fn


def merge(all_routes: Iterable[Routes]) -> Routes:
    """The routes of every module in one, refusing any event or button routed twice."""
    merged = Routes()
    for routes in all_routes:
        for prefix, fn in routes.buttons.items():
            _add(merged.buttons, prefix, fn, f"button {prefix!r}")
        for name in ("photo", "text", "unsupported"):
            for kind, fn in getattr(routes, name).items():
                _add(getattr(merged, name), kind, fn, f"{name} in {kind.value} chats")
        if routes.membership is not None:
            merged.on_membership(routes.membership)
    return merged
