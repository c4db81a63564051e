"""The conversation, platform-neutral: neutral events in, neutral replies out.

Each module registers what it answers in its own `routes`; the bot's router includes them all.
No module here imports telegram or wechatpy.
"""

from . import consent, groups, help, photos, privacy, styles

ROUTES = (consent.routes, photos.routes, styles.routes, privacy.routes, groups.routes, help.routes)
unknown_command = help.unknown_command

__all__ = ["ROUTES", "unknown_command"]
