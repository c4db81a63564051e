"""Darkroom's local styling engine. It knows nothing about chats: the bot and the CLI call it."""

from . import offline  # noqa: F401  (first: before any runtime is imported)
from .cancel import Cancellation, Cancelled  # noqa: E402
from .catalogue import Catalogue, Style, load_catalogue  # noqa: E402
from .engine import PICTURE_STYLE, AsyncEngine, Engine, EngineConfig, Picture, StyledImage, StyleRequest  # noqa: E402
from .errors import (  # noqa: E402
    ImageRejected,
    InferenceError,
    ModelIntegrityError,
    UnknownStyle,
)
from .version import __version__  # noqa: E402

__all__ = [
    "PICTURE_STYLE",
    "AsyncEngine",
    "Cancellation",
    "Cancelled",
    "Catalogue",
    "Engine",
    "EngineConfig",
    "ImageRejected",
    "InferenceError",
    "ModelIntegrityError",
    "Picture",
    "Style",
    "StyleRequest",
    "StyledImage",
    "UnknownStyle",
    "__version__",
    "load_catalogue",
]
