"""What a setting is: its declaration (`setting`), its group, how its text is read (`Kind`), and
the two errors settings and start-up raise. The settings themselves are in bot/settings/__init__.py.

Every setting, declared once and read from the environment (and `.env`) in this one place.

Each field of `Settings` is declared with `setting(...)`: its key, default, kind (how the text
is read and written back), whether it is a secret, and one line of doc. That declaration is the
only home of these facts: `from_environment` reads the keys through it, and `python -m
bot.settings --write` generates `.env.example` and the README's settings table from it (a test
fails when either differs). Nothing else in Darkroom reads `os.environ`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from handlers.context import ConversationSettings

T = TypeVar("T")

MAX_INPUT_TTL = 600
MAX_REPLY_TTL = 47 * 3600  # Telegram lets bots delete their own messages for 48 hours
MB = 1024 * 1024
MEGAPIXEL = 1_000_000
# The conversation's defaults are the defaults of the settings it is built from (bot/app.py):
# declared there once, read here.
CHAT = ConversationSettings()


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key, never its value."""


class StartupError(RuntimeError):
    """The bot cannot start (a platform refuses us or cannot be reached): a clear message for the
    operator, never a traceback, never a secret."""


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How a setting's text becomes its value, and its value text again (for `.env.example`)."""

    # (text, key) -> value; None for "not given" (blank), so that the default applies. Errors
    # are SettingsError naming the key, never the value.
    parse: Callable[[str, str], T | None]
    write: Callable[[T], str] = str


@dataclass(frozen=True)
class Group:
    """A heading of `.env.example`, with what holds for every setting under it."""

    title: str
    note: str = ""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: a Settings field's key, how its text is read, and its doc."""

    group: Group
    env: str  # the environment key
    kind: Kind[Any]
    doc: str  # one line: the README table's "Meaning", and the start of the .env.example comment
    secret: bool = False  # hidden from repr, redacted from every log line (Settings.secrets)
    note: str = ""  # more for the .env.example comment
    blank_means: str = ""  # when left empty the value is worked out at start-up: what it becomes
    example: str = ""  # shown commented out in .env.example, in place of the default
    # Filled in from the Settings field this declares (see SETTINGS):
    name: str = ""
    default: Any = None


def setting(
    group: Group,
    env: str,
    default: T,
    kind: Kind[T],
    doc: str,
    *,
    secret: bool = False,
    note: str = "",
    blank_means: str = "",
    example: str = "",
) -> T:
    """A field of Settings, declared with everything the environment, `.env.example` and the
    README need to know about it (a dataclass field, so type checkers see the field's type)."""
    spec = Setting(group, env, kind, doc, secret, note, blank_means, example)
    return field(default=default, repr=not secret, metadata={"setting": spec})


