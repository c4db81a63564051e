"""Logging that carries no personal data.

Our own log lines are written without ids, names, captions or file references. As a second line
of defence every record passes a filter that removes known secrets (bot token, WeChat secret and
access token, webhook secrets, the pseudonym key), Telegram file URLs and URL query strings
(WeChat puts the OpenID there). Third-party libraries log request and update contents at DEBUG
and INFO, so they are held at WARNING whatever level the operator picks.
"""

from __future__ import annotations

import logging
import re
import sys
import threading

NOISY_LIBRARIES = ("httpx", "httpcore", "telegram", "aiohttp", "wechatpy", "urllib3", "requests", "hpack", "asyncio", "aiosqlite", "asyncpg", "PIL")

_FILE_URL = re.compile(r"/file/bot[^/\s]*/\S+")
_BOT_URL = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
_QUERY = re.compile(r"(https?://[^\s?#]+)\?[^\s#]*")


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        text = _FILE_URL.sub("/file/bot[redacted]/[file]", text)
        text = _BOT_URL.sub("/bot[redacted]", text)
        return _QUERY.sub(r"\1?[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        if record.stack_info:
            message += "\n" + record.stack_info
            record.stack_info = None
        record.msg = self.redact(message)
        record.args = None
        return True


REDACTOR = Redactor()


def configure(level: str = "INFO", secrets: list[str] | None = None, stream=None) -> logging.Handler:
    """Log to stderr (or ``stream``) through the redactor; returns the handler."""
    REDACTOR.add(*(secrets or []))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
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
