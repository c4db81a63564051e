"""The installed package's version, in a module of its own so that any part of the engine can
name it without importing the package that imports that part (no cycle)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("darkroom-bot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
