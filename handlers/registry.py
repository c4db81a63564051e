"""A small registry of what each handler module answers, collected in one place by the router."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable

Handler = Callable[..., Awaitable[None]]


@dataclass
class Routes:
    commands: dict[str, Handler] = field(default_factory=dict)
    buttons: dict[str, Handler] = field(default_factory=dict)  # by prefix before ":"
    photo: Handler | None = None
    text: Handler | None = None
    membership: Handler | None = None
    unsupported: Handler | None = None

    def command(self, *names: str):
        def register(fn: Handler) -> Handler:
            for name in names:
                self.commands[name] = fn
            return fn

        return register

    def button(self, prefix: str):
        def register(fn: Handler) -> Handler:
            self.buttons[prefix] = fn
            return fn

        return register

    def on_photo(self, fn: Handler) -> Handler:
        self.photo = fn
        return fn

    def on_text(self, fn: Handler) -> Handler:
        self.text = fn
        return fn

    def on_membership(self, fn: Handler) -> Handler:
        self.membership = fn
        return fn

    def on_unsupported(self, fn: Handler) -> Handler:
        self.unsupported = fn
        return fn
