"""The conversation, platform-neutral: neutral events in, neutral replies out.

The commands are one table (`commands.COMMANDS`); each module registers its buttons and the
photo, text and membership events it takes in its own `routes`; the bot's router includes them
all. No module here imports telegram or wechatpy.
"""

from . import consent, files, groups, guide, photos, styles
from .commands import COMMANDS, UNKNOWN

ROUTES = (consent.routes, photos.routes, files.routes, styles.routes, groups.routes, guide.routes)

__all__ = ["COMMANDS", "ROUTES", "UNKNOWN"]
