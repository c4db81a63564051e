"""Typed failures of the styling engine.

Callers (the bot, the CLI) turn each one into a message for a person; none of them carries
image bytes or anything about who sent the picture.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class for everything the engine refuses or fails at."""


class ImageRejected(InferenceError):
    """The input is not something we will style. ``reason`` is a stable code for messages."""

    reason = "invalid"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


class EmptyImage(ImageRejected):
    reason = "empty"


class TooManyBytes(ImageRejected):
    reason = "too_many_bytes"


class TooManyPixels(ImageRejected):
    """Refused from the header alone, before any pixel is decoded (decompression bombs)."""

    reason = "too_many_pixels"


class UnsupportedFormat(ImageRejected):
    reason = "unsupported_format"


class CorruptImage(ImageRejected):
    reason = "corrupt"


class TooSmall(ImageRejected):
    reason = "too_small"


class UnknownStyle(InferenceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown style {name!r}")
        self.name = name


class ModelIntegrityError(InferenceError):
    """A model file is missing or its SHA-256 differs from the catalogue: refuse to start."""


class TooComplex(ImageRejected):
    """Would cost too much to decode: a JPEG with absurdly many scans, or any input whose
    decoding ran past its CPU or time limit."""

    reason = "too_complex"
