"""Every setting is declared once, in bot/settings/__init__.py; .env.example and the README table follow it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from bot.settings import CHAT, SETTINGS, Settings, from_environment
from bot.settings.generated import REGENERATE, ROOT, env_example, markdown_table, readme_with_table
from handlers.context import ConversationSettings

STALE = f"is out of date with bot/settings/: run `{REGENERATE}` and commit the result"


def test_env_example_is_what_the_table_generates():
    assert (ROOT / ".env.example").read_text() == env_example(), f".env.example {STALE}"


def test_readme_settings_table_is_what_the_table_generates():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme and readme_with_table(readme) == readme, f"README.md's settings table {STALE}"


def test_every_settings_field_is_declared_in_the_table_once_with_one_line_of_doc():
    assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)], "a Settings field not declared with setting()"
    keys = [s.env for s in SETTINGS]
    assert len(set(keys)) == len(keys), "two fields read the same key"
    for s in SETTINGS:
        assert s.env.startswith(("DARKROOM_", "TELEGRAM_", "WECHAT_")), s.env
        assert s.doc.strip() and "\n" not in s.doc and "|" not in s.doc, f"{s.env}: one line of doc, no table bars"


def test_each_default_is_what_its_env_example_line_reads_back_as():
    for s in SETTINGS:
        if s.blank_means:  # worked out at start-up: .env.example leaves it empty
            assert s.kind.parse("", s.env) in (None, s.default), s.env
        else:
            assert s.kind.parse(s.kind.write(s.default), s.env) == s.default, s.env


def test_the_example_file_and_an_empty_environment_both_give_the_declared_defaults():
    generated = replace(from_environment({}, dotenv=ROOT / ".env.example"), telegram_webhook_secret="")
    empty = replace(from_environment({}, dotenv=None), telegram_webhook_secret="")  # generated at each start
    assert generated == empty == Settings()


def test_the_conversation_and_the_settings_share_one_default_each():
    shared = {f.name for f in fields(ConversationSettings)} & {f.name for f in fields(Settings)}
    assert shared >= {"min_age", "input_ttl", "reply_ttl", "delete_selfie", "operator", "default_style", "max_input_bytes", "webapp_url"}
    for name in shared:
        expected = getattr(CHAT, name)
        if name == "default_style":  # None in the conversation, "" as a setting: the first style
            expected = expected or ""
        assert getattr(Settings(), name) == expected, name


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.secret], ids=lambda s: s.env)
def test_a_secret_setting_is_hidden_from_repr_and_redacted_from_logs(s):
    value = b"v" * 40 if s.name == "secret" else "postgresql://u:" + "v" * 40 + "@h/d"
    settings = replace(Settings(), **{s.name: value})
    assert value in settings.secrets()
    assert ("v" * 40) not in repr(settings)


def test_python_m_bot_settings_prints_what_the_tests_compare():
    out = subprocess.run(
        [sys.executable, "-m", "bot.settings", "--env-example"], capture_output=True, text=True, check=True, cwd=Path(ROOT)
    ).stdout
    assert out == env_example()
