"""The engine's configuration from the settings, in a module of its own so that the offline CLI
can build an engine without importing the bot's platform libraries (~20 MB of RSS)."""

from __future__ import annotations

import logging

from bot.safeguards.pseudonym import load_or_create_secret
from bot.settings import Settings
from bot.storage import credentials
from inference import EngineConfig
from inference.backends import KEPT_CHOICE_FILE
from inference.imageio import chinese_mark_font
from inference.provenance import SigningIdentity

log = logging.getLogger(__name__)


def engine_config(settings: Settings) -> EngineConfig:
    if (settings.visible_label or settings.wechat_enabled and settings.wechat_visible_label) and not chinese_mark_font():
        log.warning("no font with Chinese glyphs is installed (Debian: fonts-noto-cjk): the visible AI mark is in English only")
    return EngineConfig(
        max_side=settings.max_side,
        max_bytes=settings.max_input_bytes,
        max_pixels=settings.max_input_pixels,
        threads=settings.threads,
        jpeg_quality=settings.jpeg_quality,
        visible_label=settings.visible_label,
        custom_styles=settings.custom_styles,
        backend=settings.engine,
        precision=settings.precision,
        provider=settings.provider_name,
        signing=signing_identity(settings),
        choice_file=settings.data_dir / KEPT_CHOICE_FILE,
    )


def signing_identity(settings: Settings) -> SigningIdentity | None:
    """The data dir's signing identity, unsealed, when signing is on and one exists. Its key
    opens only with the instance secret: DARKROOM_SECRET, or the key file beside it (read, never
    created here: an identity exists only after `darkroom credentials init`, which made both)."""
    if not settings.content_credentials or not credentials.exists(settings.data_dir):
        return None
    secret = settings.secret
    if not secret and settings.secret_file.exists():
        secret = load_or_create_secret(settings.secret_file)
    return credentials.load(settings.data_dir, secret)
