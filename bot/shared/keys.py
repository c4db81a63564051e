"""Every key Darkroom writes to Redis, in one place: the writers build them here and
`darkroom audit` recognises them here. A key not described below is a finding.

Nothing in a key or a value is a raw id: chats appear only as their HMAC pseudonym (32 hex
digits, bot/pseudonym.py), the WeChat access token only sealed (bot/shared/seal.py), and the rest
are random lock owners, random counter entries and numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "darkroom"
PSEUDONYM = r"[0-9a-f]{32}"
_LOCK_OWNER = re.compile(rb"[0-9a-f]{32}")
_ENTRY = re.compile(rb"[0-9a-f]{16}")


@dataclass(frozen=True)
class Keys:
    prefix: str = PREFIX

    @property
    def wechat_token(self) -> str:
        return f"{self.prefix}:wechat:token"

    @property
    def wechat_token_lock(self) -> str:
        return f"{self.prefix}:wechat:token:lock"

    @property
    def telegram_sent(self) -> str:
        return f"{self.prefix}:tg:sent"

    def telegram_group(self, chat_pseudonym: str) -> str:
        return f"{self.prefix}:tg:group:{chat_pseudonym}"

    def telegram_pause(self, chat_pseudonym: str) -> str:
        return f"{self.prefix}:tg:pause:{chat_pseudonym}"


@dataclass(frozen=True)
class KeyKind:
    """One kind of key: its name pattern (after the prefix), its Redis type, what each stored
    element must look like (``sealed``: a blob sealed under the key's own name)."""

    name: str
    pattern: re.Pattern[str]
    type: str
    sealed: bool = False
    element: re.Pattern[bytes] | None = None


KINDS = (
    KeyKind("WeChat access token (sealed)", re.compile(r"wechat:token"), "string", sealed=True),
    KeyKind("WeChat token refresh lock (random owner)", re.compile(r"wechat:token:lock"), "string", element=_LOCK_OWNER),
    KeyKind("Telegram messages sent, all chats (random entries, timestamps)", re.compile(r"tg:sent"), "zset", element=_ENTRY),
    KeyKind("Telegram messages sent per group (pseudonym keys)", re.compile(rf"tg:group:{PSEUDONYM}"), "zset", element=_ENTRY),
    KeyKind("Telegram flood-control pauses per chat (pseudonym keys)", re.compile(rf"tg:pause:{PSEUDONYM}"), "string", element=re.compile(rb"1")),
)


def kind_of(key: str, prefix: str = PREFIX) -> KeyKind | None:
    head = f"{prefix}:"
    if not key.startswith(head):
        return None
    rest = key[len(head):]
    return next((kind for kind in KINDS if kind.pattern.fullmatch(rest)), None)
