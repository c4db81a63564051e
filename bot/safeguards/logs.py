"""Logging that carries no personal data.

Our own log lines are written without ids, names, captions or file references. As a second line
of defence every line passes a redactor that removes every form (as given, hex, base64,
percent-encoded) of the known secrets (bot token, webhook secret, WeChat token, AppSecret, AES key
and access token, the pseudonym key), Telegram file URLs and URL query strings (WeChat puts the
OpenID there). Third-party records never carry their payload: only time, level, logger and
exception type are written. Third-party libraries are also held at WARNING whatever level the
operator picks.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
import threading
import urllib.parse

NOISY_LIBRARIES = ("httpx", "httpcore", "telegram", "aiohttp", "wechatpy", "urllib3", "requests", "hpack", "asyncio", "aiosqlite", "asyncpg", "PIL")

_FILE_URL = re.compile(r"/file/bot[^/\s]*/\S+")
_BOT_URL = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
_QUERY = re.compile(r"(https?://[^\s?#]+)\?[^\s#]*")


def secret_forms(secret: str | bytes) -> set[str]:
    """Every spelling of ``secret`` a log line could carry: as given, hex (either case), standard
    and URL-safe base64 (with and without padding) and percent-encoded."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    forms = {raw.hex(), raw.hex().upper(), urllib.parse.quote(raw, safe="")}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms.update((encoded, encoded.rstrip("=")))
    if isinstance(secret, str):
        forms.add(secret)
    else:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable():
                forms.add(text)
    return {form for form in forms if len(form) >= 6}


def is_ours(logger_name: str) -> bool:
    return logger_name == "darkroom" or logger_name.startswith("darkroom.")


class Redactor:
    """Knows the secrets; removes every form of each from a text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern | None = None
        self._lock = threading.Lock()

    def add(self, *secrets: str | bytes) -> None:
        with self._lock:
            for secret in secrets:
                if secret:
                    self._secrets.update(secret_forms(secret))
            ordered = sorted(self._secrets, key=len, reverse=True)  # longest first: no half-redacted secret
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub("[redacted]", text)
        text = _FILE_URL.sub("/file/bot[redacted]/[file]", text)
        text = _BOT_URL.sub("/bot[redacted]", text)
        return _QUERY.sub(r"\1?[redacted]", text)


class PrivateFormatter(logging.Formatter):
    """Formats a record without personal data, without changing the record itself.

    Our own records keep their message (written without personal data) and pass the redactor.
    A record from any other logger keeps its time, level, logger and exception type and loses
    everything else: libraries put request and response bodies, user names and file ids in
    their messages, arguments and exception texts (python-telegram-bot logs a whole invalid API
    answer at ERROR), so none of it is written, whatever the library."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        if is_ours(record.name):
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self.formatException(record.exc_info)
            if record.stack_info:
                message += "\n" + self.formatStack(record.stack_info)
        else:
            message = "(third-party message withheld)"
            if record.exc_info and record.exc_info[0] is not None:
                message = f"{record.exc_info[0].__name__} (third-party message withheld)"
        head = f"{self.formatTime(record, self.datefmt)} {record.levelname} {record.name}: "
        return self.redactor.redact(head + message)


REDACTOR = Redactor()


def configure(level: str = "INFO", secrets: list[str | bytes] | None = None, stream=None) -> logging.Handler:
    """Log to stderr (or ``stream``) through the private formatter; returns the handler."""
    REDACTOR.add(*(secrets or []))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(PrivateFormatter(REDACTOR))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_darkroom", False):
            root.removeHandler(existing)
    handler._darkroom = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries()
    return handler


def quiet_libraries() -> None:
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
