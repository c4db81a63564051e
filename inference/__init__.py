"""Darkroom's local styling engine. It knows nothing about chats: the bot and the CLI call it."""

import os
import sys
import warnings

# onnxruntime on Linux (1.32 at least) sends usage telemetry: about 9 seconds after
# `import onnxruntime` it resolves mobile.events.data.microsoft.com (a dozen DNS lookups), and
# at import it writes a device id and onnxruntime.db under ~/.cache/Microsoft/DeveloperTools/
# and a `.ses` file in $TMPDIR. Only this variable, present BEFORE onnxruntime is imported, stops
# all of it (`onnxruntime.disable_telemetry_events()` does not). Every onnxruntime import in
# Darkroom goes through this package, so setting it here covers `darkroom run`, `stylize`,
# `sheet`, `styles` and library use. Forced, not defaulted: "0" in the environment must not turn
# telemetry back on. tests/proofs/test_os_level.py proves it under strace in a network namespace.
if "onnxruntime" in sys.modules and os.environ.get("ORT_DISABLE_TELEMETRY") != "1":
    warnings.warn(
        "onnxruntime was imported before Darkroom's engine, so its telemetry could not be switched "
        "off; import inference first or set ORT_DISABLE_TELEMETRY=1 in the environment",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("darkroom-bot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from .cancel import Cancellation, Cancelled  # noqa: E402
from .catalogue import Catalogue, Style, load_catalogue  # noqa: E402
from .engine import PICTURE_STYLE, AsyncEngine, Engine, EngineConfig, Picture, StyledImage, StyleRequest  # noqa: E402
from .errors import (  # noqa: E402
    ImageRejected,
    InferenceError,
    ModelIntegrityError,
    UnknownStyle,
)

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
