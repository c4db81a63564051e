"""Every command, in one table: its name, its menu description (a key in texts.py), the handler
for each kind of chat, and the words that stand for it where commands are typed.

The router routes from it, Telegram's command menu and WeChat's typed commands are read from it;
a command is added here and nowhere else (plus its description's two texts). The order is the
order of Telegram's menu.
"""

from __future__ import annotations

from . import consent, groups, guide, photos, privacy, styles
from .registry import Command, typed_words
from .texts import LANGUAGES, t

COMMANDS = (
    Command("start", "command.start", private=consent.start, group=guide.help_in_group, typed=("开始", "start")),
    Command("styles", "command.styles", styles.list_styles, typed=("风格", "所有风格", "styles")),
    Command(
        "style",
        "command.style",
        private=styles.favourite_command,
        group=groups.style_replied_photo,
        typed_with_args=("风格", "设置风格", "style"),
    ),
    Command("style_from", "command.style_from", photos.style_from),
    Command("privacy", "command.privacy", private=privacy.privacy, group=privacy.private_only, typed=("隐私", "隐私说明", "privacy")),
    Command("my_data", "command.my_data", private=privacy.my_data, group=privacy.private_only, typed=("我的数据", "my data")),
    Command(
        "delete_my_data",
        "command.delete_my_data",
        privacy.delete_my_data,
        names=("forget_me",),
        typed=("删除我的数据", "删除数据", "delete my data"),
    ),
    Command("revoke", "command.revoke", privacy.revoke, typed=("撤回同意", "revoke")),
    Command("help", "command.help", private=guide.help_private, group=guide.help_in_group, typed=("帮助", "help")),
    # Group settings, for the group's admins: not in the menu, which private chats show too.
    Command("darkroom_off", "command.darkroom_off", private=guide.help_in_group, group=groups.switch, in_menu=False),
    Command("darkroom_on", "command.darkroom_on", private=guide.help_in_group, group=groups.switch, in_menu=False),
)

# What a command the table does not know gets: help, not silence.
UNKNOWN = Command("", "", private=guide.unknown_private, group=guide.unknown_in_group, in_menu=False)


def menu(language: str) -> list[tuple[str, str]]:
    """Telegram's command menu in ``language``: (command, description) in the table's order."""
    return [(c.name, t(c.description, language)) for c in COMMANDS if c.in_menu]


MENUS = {language: menu(language) for language in LANGUAGES}
TYPED = typed_words(COMMANDS)  # whole typed messages, lower case -> command name
TYPED_WITH_ARGS = typed_words(COMMANDS, with_args=True)  # first typed word -> command name
