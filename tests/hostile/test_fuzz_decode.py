"""Fuzzing `inference.imageio.decode`: mutated real JPEG/PNG/GIF/WebP files and random bytes.

Whatever comes in, decode returns a C-contiguous uint8 HxWx3 array within its limits, or
raises an `ImageRejected` subclass. Nothing else: no Pillow exception, no MemoryError, no
struct.error, no warning on stderr. The example database is off, so nothing is written.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inference.errors import ImageRejected
from inference.imageio import DecodeLimits, decode

SMALL_LIMITS = DecodeLimits(max_bytes=256 * 1024, max_pixels=2_000_000, max_side=256, min_side=32)
DEFAULT_LIMITS = DecodeLimits()


def _encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(2024)
    cells = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgb = Image.fromarray(np.kron(cells, np.ones((8, 8, 1), dtype=np.uint8)))  # 40x48
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Fuzz camera"
    paletted = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT), rgb.transpose(Image.Transpose.ROTATE_180)]
    grey16 = Image.fromarray((np.arange(40 * 48, dtype=np.uint32).reshape(48, 40) * 34).astype(np.uint16))
    return {
        "jpeg": _encoded(rgb, "JPEG", quality=85),
        "jpeg-progressive-exif": _encoded(rgb, "JPEG", quality=85, progressive=True, exif=exif.tobytes()),
        "png": _encoded(rgb, "PNG"),
        "png-rgba": _encoded(rgba, "PNG"),
        "png-palette-trns": _encoded(paletted, "PNG", transparency=0),
        "png-16bit": _encoded(grey16, "PNG"),
        "gif-animated": _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40),
        "webp-lossy": _encoded(rgb, "WEBP", quality=80),
        "webp-lossless-alpha": _encoded(rgba, "WEBP", lossless=True),
    }


SEEDS = _seeds()
SEED_NAMES = sorted(SEEDS)
MAGICS = [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"RIFF\x00\x01\x00\x00WEBPVP8L", b"RIFF\x00\x01\x00\x00WEBPVP8X"]
SIZES = st.one_of(
    st.sampled_from([0, 1, 2, 31, 32, 33, 255, 256, 257, 1280, 1281, 8000, 16383, 16384, 32767, 32768, 65535, 65536, 2**31 - 1, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)

seed_data = st.sampled_from(SEED_NAMES).map(SEEDS.__getitem__)


@st.composite
def bit_flips(draw) -> bytes:
    data = bytearray(draw(seed_data))
    for _ in range(draw(st.integers(1, 12))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@st.composite
def byte_overwrites(draw) -> bytes:
    data = bytearray(draw(seed_data))
    at = draw(st.integers(0, len(data) - 1))
    value = draw(st.binary(min_size=1, max_size=8))
    data[at : at + len(value)] = value
    return bytes(data)


@st.composite
def truncations(draw) -> bytes:
    data = draw(seed_data)
    return data[: draw(st.integers(0, len(data)))]


@st.composite
def splices(draw) -> bytes:
    """A piece of one file inserted into, or written over part of, another (or itself)."""
    host, donor = draw(seed_data), draw(seed_data)
    start = draw(st.integers(0, len(donor)))
    piece = donor[start : start + draw(st.integers(0, 512))]
    at = draw(st.integers(0, len(host)))
    if draw(st.booleans()):
        return host[:at] + piece + host[at:]
    return host[:at] + piece + host[at + len(piece) :]


def _fix_png_crc(data: bytearray, chunk_at: int) -> None:
    length = struct.unpack(">I", data[chunk_at : chunk_at + 4])[0]
    body = bytes(data[chunk_at + 4 : chunk_at + 8 + length])
    data[chunk_at + 8 + length : chunk_at + 12 + length] = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


@st.composite
def huge_headers(draw) -> bytes:
    """The size fields of a real file rewritten, often to absurd values."""
    name = draw(st.sampled_from(SEED_NAMES))
    data = bytearray(SEEDS[name])
    width, height = draw(SIZES), draw(SIZES)
    if name.startswith("png"):
        data[16:24] = struct.pack(">II", width, height)
        if draw(st.booleans()):
            _fix_png_crc(data, 8)  # a well-formed header that lies
    elif name.startswith("jpeg"):
        for marker in (b"\xff\xc0", b"\xff\xc2"):
            at = data.find(marker)
            if at > 0:
                data[at + 5 : at + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    elif name.startswith("gif"):
        if draw(st.booleans()):
            data[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)  # logical screen
        at = data.find(b"\x2c", 10)  # first image descriptor (or a byte that looks like one)
        if at > 0 and at + 9 <= len(data):
            data[at + 5 : at + 9] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    else:
        at = data.find(b"VP8X")
        if at > 0:
            data[at + 12 : at + 18] = (width & 0xFFFFFF).to_bytes(3, "little") + (height & 0xFFFFFF).to_bytes(3, "little")
        at = data.find(b"VP8L")
        if at > 0:
            bits = ((width & 0x3FFF) | (height & 0x3FFF) << 14) | (data[at + 12] & 0xF0) << 24
            data[at + 9 : at + 13] = struct.pack("<I", bits & 0xFFFFFFFF)
        at = data.find(b"VP8 ")
        if at > 0:
            data[at + 14 : at + 18] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.sampled_from(MAGICS), st.binary(max_size=2048)).map(lambda parts: parts[0] + parts[1]),
)

hostile = st.one_of(bit_flips(), byte_overwrites(), truncations(), splices(), huge_headers(), random_bytes, seed_data)


def check(data: bytes, limits: DecodeLimits) -> None:
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            rgb = decode(data, limits)
        except ImageRejected:
            rgb = None
    assert [str(w.message) for w in warned if "PIL" in w.filename] == []
    if rgb is None:
        return
    assert isinstance(rgb, np.ndarray)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.c_contiguous
    assert max(rgb.shape[:2]) <= limits.max_side
    assert min(rgb.shape[:2]) >= limits.min_side


FUZZ = dict(
    deadline=None,
    database=None,  # no example database on disk
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def test_every_seed_decodes():
    for name, data in SEEDS.items():
        rgb = decode(data, SMALL_LIMITS)
        assert min(rgb.shape[:2]) >= 32, name


@settings(max_examples=400, **FUZZ)
@given(hostile)
def test_decode_returns_a_valid_picture_or_a_typed_refusal(data):
    check(data, SMALL_LIMITS)


@settings(max_examples=150, **FUZZ)
@given(st.one_of(huge_headers(), bit_flips(), splices()))
def test_decode_with_the_default_limits(data):
    check(data, DEFAULT_LIMITS)
