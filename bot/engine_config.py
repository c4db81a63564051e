"""The engine's configuration from the settings, in a module of its own so that the offline CLI
can build an engine without importing the bot's platform libraries (~20 MB of RSS)."""

from __future__ import annotations

from inference import EngineConfig
from inference.backends import KEPT_CHOICE_FILE

from .settings import Settings


def engine_config(settings: Settings) -> EngineConfig:
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
        choice_file=settings.data_dir / KEPT_CHOICE_FILE,
    )
