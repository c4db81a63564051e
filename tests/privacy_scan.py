"""Tools for the privacy proofs: a canary photo whose bytes can be recognised anywhere, and
scanners for files, logs and database rows."""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules"}


@dataclass
class Canary:
    """A JPEG portrait carrying a unique marker in an EXIF description, a JPEG comment and its
    pixels. `needles` are byte strings that must never be found at rest: the marker, slices of
    the file itself, and rows of its decoded pixels."""

    jpeg: bytes
    marker: bytes
    needles: list[bytes] = field(default_factory=list)


def make_canary(rgb: np.ndarray, side: int = 320) -> Canary:
    marker = b"DARKROOM-CANARY-" + secrets.token_hex(12).encode()
    image = Image.fromarray(rgb).convert("RGB")
    image.thumbnail((side, side))
    pixels = np.array(image)
    # The marker in the pixels too: a strip at the bottom whose values spell it.
    strip = np.frombuffer(marker.ljust(pixels.shape[1] * 3, b"\0")[: pixels.shape[1] * 3], dtype=np.uint8)
    pixels[-1] = strip.reshape(-1, 3)
    exif = Image.Exif()
    exif[0x010E] = marker.decode()  # ImageDescription
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95, exif=exif.tobytes(), comment=marker)
    jpeg = out.getvalue()
    decoded = np.array(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    needles = [marker]
    # Raw file bytes, taken from the entropy-coded scan: the headers before it (quantisation and
    # Huffman tables) are shared by every JPEG Pillow writes at the same quality, so a slice of
    # them would match unrelated pictures.
    scan = jpeg.index(b"\xff\xda") + 64
    for start in (scan, (scan + len(jpeg)) // 2, len(jpeg) - 80):
        needles.append(jpeg[start : start + 48])
    for row in (decoded.shape[0] // 3, decoded.shape[0] // 2):
        needles.append(decoded[row, 40:72].tobytes())  # decoded pixel bytes
    return Canary(jpeg, marker, needles)


def files_under(root: Path, since: float | None = None, max_size: int = 200 * 1024 * 1024):
    if not root.exists():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            if not path.is_file() or stat.st_size > max_size:
                continue
            if since is not None and stat.st_mtime < since:
                continue
            yield path


def scan_files(roots: list[Path], needles: list[bytes], since: float | None = None) -> list[str]:
    """Paths (with the needle index) of files that contain any needle."""
    hits = []
    for root in roots:
        for path in files_under(root, since):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for i, needle in enumerate(needles):
                if needle and needle in data:
                    hits.append(f"{path} (needle {i})")
    return hits


def scan_text(texts: list[str], needles: list[str]) -> list[str]:
    return [f"{needle!r} in {text[:200]!r}" for text in texts for needle in needles if needle and needle in text]


def rest_roots(data_dir: Path) -> list[Path]:
    """Where bytes at rest could end up: the data dir, the system temp dir and the working dir."""
    return [data_dir, Path(tempfile.gettempdir()), Path.cwd()]


def now() -> float:
    return time.time() - 1.0
