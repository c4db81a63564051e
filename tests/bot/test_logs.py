"""The log filter: third-party records carry no payload, and no form of any secret survives."""

from __future__ import annotations

import base64
import logging
import urllib.parse

import pytest
from telegram import Bot
from telegram.error import TelegramError

from bot.settings import from_environment
from tests.conftest import ALICE, SECRET, TOKEN
from tests.fakes.telegram_api import Failure

FILE_ID = "AgACAgQAAxkBAAIBa2ZfileIdOfAlicesSelfie_9876543210"
# What a broken proxy in front of the Bot API might answer: an update-shaped body, cut short.
INVALID_BODY = (
    '{"ok":true,"result":[{"update_id":7,"message":{"from":{"id":%d,"first_name":"%s","username":"%s"},'
    '"photo":[{"file_id":"%s"' % (ALICE.id, ALICE.first_name, ALICE.username, FILE_ID)
)


async def test_a_real_ptb_error_record_with_an_invalid_json_body_loses_its_payload(fake_telegram, captured_logs):
    stream, records = captured_logs
    fake_telegram.failures.append(Failure("getMe", "invalid_json", times=1, description=INVALID_BODY))
    bot = Bot(TOKEN, base_url=f"{fake_telegram.url}/bot")
    with pytest.raises(TelegramError):
        await bot.get_me()
    await bot.shutdown()
    # The library really did log the body, with the exception attached ...
    [raw] = [r for r in records if r.name.startswith("telegram") and r.levelno == logging.ERROR]
    assert str(ALICE.id) in raw.getMessage() and raw.exc_info is not None
    # ... and what reaches the operator keeps the logger and the exception type, nothing else.
    text = stream.getvalue()
    line = next(line for line in text.splitlines() if " telegram." in line)
    assert "ERROR" in line and "JSONDecodeError" in line
    for private in (str(ALICE.id), ALICE.username, ALICE.first_name, FILE_ID, "update_id", "Traceback"):
        assert private not in text


def test_any_library_loses_message_arguments_exception_text_and_stack(captured_logs):
    stream, _ = captured_logs
    try:
        raise ValueError(f"cannot parse {ALICE.username}")
    except ValueError:
        logging.getLogger("somelibrary.client").warning("got %s", {"username": ALICE.username}, exc_info=True, stack_info=True)
    logging.getLogger("another").error("user %s said %r", ALICE.id, "hello")
    text = stream.getvalue()
    assert "somelibrary.client" in text and "ValueError" in text and "another" in text
    assert ALICE.username not in text and str(ALICE.id) not in text and "hello" not in text
    assert "Traceback" not in text and "Stack" not in text and text.count("\n") == 2


def test_our_own_records_keep_their_message(captured_logs):
    stream, _ = captured_logs
    logging.getLogger("darkroom.jobs").info("queue has %d waiting", 3)
    assert "queue has 3 waiting" in stream.getvalue()


def test_every_form_of_every_secret_is_redacted(tmp_path, captured_logs):
    stream, _ = captured_logs
    from bot.safeguards import logs

    settings = from_environment(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": "webhook-secret-value-0123456789",
            "WECHAT_TOKEN": "wechat-token-value",
            "WECHAT_APPID": "wx0123456789abcdef",
            "WECHAT_SECRET": "wechat-app-secret-0123456789abcdef",
            "WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "DARKROOM_SECRET": SECRET,
            "DARKROOM_DATA_DIR": str(tmp_path),
        },
        dotenv=None,
    )
    logs.REDACTOR.add(*settings.secrets())
    aes = base64.b64decode(settings.wechat_aes_key + "=")
    forms = []
    for value in (TOKEN, settings.telegram_webhook_secret, settings.wechat_token, settings.wechat_secret,
                  settings.wechat_aes_key, SECRET, aes):
        raw = value if isinstance(value, bytes) else value.encode()
        forms += [
            raw.hex(),
            raw.hex().upper(),
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            urllib.parse.quote(raw, safe=""),
        ]
        if not isinstance(value, bytes):
            forms.append(value)
    forms.append(TOKEN.split(":", 1)[1])  # the token's secret half on its own
    log = logging.getLogger("darkroom.test")
    for form in forms:
        log.warning("value=%s.", form)
    text = stream.getvalue()
    for form in forms:
        assert form not in text, form
    assert text.count("[redacted]") == len(forms)
