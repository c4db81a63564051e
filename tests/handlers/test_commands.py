"""The command table is the one home of a command: its texts exist in both languages, and both
adapters expose exactly what it declares (Telegram's menu: tests/e2e/test_telegram_modes.py)."""

from __future__ import annotations

from bot.platforms.wechat import callback as wechat
from handlers.commands import COMMANDS, MENUS
from handlers.events import ChatKind
from handlers.texts import LANGUAGES, TEXTS


def test_every_command_has_an_english_and_a_chinese_description():
    for command in COMMANDS:
        entry = TEXTS.get(command.description, {})
        for language in LANGUAGES:
            assert entry.get(language, "").strip(), f"/{command.name} has no {language} description"
        assert entry["en"] != entry["zh"], f"/{command.name}: the Chinese description is the English one"


def test_every_command_answers_in_private_and_in_groups():
    # A command nobody routes in one kind of chat would fall through to "unknown command".
    for command in COMMANDS:
        assert set(command.handlers) == set(ChatKind), f"/{command.name} is not routed in every kind of chat"


def test_the_menu_is_the_tables_menu_commands_in_both_languages():
    expected = [c.name for c in COMMANDS if c.in_menu]
    assert set(MENUS) == set(LANGUAGES)
    for language, menu in MENUS.items():
        assert [name for name, _ in menu] == expected
        assert all(description == TEXTS[f"command.{name}"][language] for name, description in menu)


def test_wechat_reads_exactly_the_tables_typed_commands():
    typed = {word: c.name for c in COMMANDS for word in c.typed}
    with_args = {word: c.name for c in COMMANDS for word in c.typed_with_args}
    for word, name in typed.items():
        assert wechat._command(word) == (name, ""), word
        assert wechat._command(word.upper()) == (name, ""), word
    for word, name in with_args.items():
        assert wechat._command(f"{word} ink 0.6") == (name, "ink 0.6"), word
    for command in COMMANDS:
        for name in command.all_names:
            assert wechat._command(f"/{name} x") == (name, "x")
    # Nothing beyond the table is a typed command.
    assert wechat._command("删除") is None and wechat._command("hello") is None
    assert set(wechat.commands.TYPED) == {w.lower() for w in typed}
    assert set(wechat.commands.TYPED_WITH_ARGS) == {w.lower() for w in with_args}
