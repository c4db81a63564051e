"""A named corpus of hostile and broken inputs, generated in memory (no files, no downloads).

Each `Case` says what a person (or an attacker) might send and what Darkroom must make of it:
a specific `ImageRejected` subclass, or a correct picture of a known size. `CORPUS` is built
once per process; everything in it is deterministic.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from inference.errors import (
    CorruptImage,
    EmptyImage,
    ImageRejected,
    TooComplex,
    TooManyBytes,
    TooManyPixels,
    TooSmall,
    UnsupportedFormat,
)

OK = None  # the expected outcome of a case that must give a correct picture

# (orientation -> how the stored pixels are turned to stand upright), in numpy terms
UPRIGHT = {
    2: lambda s: s[:, ::-1],
    3: lambda s: s[::-1, ::-1],
    4: lambda s: s[::-1, :],
    5: lambda s: s.transpose(1, 0, 2),
    6: lambda s: np.rot90(s, -1),
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2),
    8: lambda s: np.rot90(s, 1),
}


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expected: type[ImageRejected] | None  # OK (None): a correct picture
    what: str
    # for OK cases: the decoded size (height, width) and, where known, the picture itself
    # (compared with a tolerance: JPEG is lossy)
    size: tuple[int, int] | None = None
    reference: np.ndarray | None = None
    tolerance: float = 8.0

    @property
    def ok(self) -> bool:
        return self.expected is None

    @property
    def outcome(self) -> str:
        return "ok" if self.ok else self.expected.__name__

    def __repr__(self) -> str:  # keep pytest ids and failure output short
        return f"Case({self.name}, {len(self.data)} bytes, {self.outcome})"


# -- building blocks ------------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG crafted by hand: a valid IHDR (with CRC) claiming width x height RGB, a tiny
    IDAT and IEND. A few dozen bytes that would decode to width*height*3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def blocks(height: int, width: int, block: int = 16, seed: int = 3) -> np.ndarray:
    """Flat blocks of random colours: asymmetric, and JPEG keeps it close."""
    cells = np.random.default_rng(seed).integers(0, 256, (-(-height // block), -(-width // block), 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(cells, np.ones((block, block, 1), dtype=np.uint8))[:height, :width])


def portrait(height: int = 240, width: int = 192) -> np.ndarray:
    """A synthetic stand-in for a selfie: a smooth background and a light oval."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([60 + 120 * x / width, 80 + 60 * y / height, 150 - 80 * x / width], axis=-1)
    face = ((x - width / 2) / (width * 0.28)) ** 2 + ((y - height * 0.45) / (height * 0.3)) ** 2 < 1
    rgb[face] = (225, 185, 160)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def exif_bytes(**tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag.lstrip("t"), 16)] = value
    return exif.tobytes()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def ftyp(brand: bytes, compatible: list[bytes]) -> bytes:
    """The leading ISO-BMFF boxes of a HEIC/AVIF file: ftyp, then the start of a meta box."""
    body = brand + b"\0\0\0\0" + b"".join(compatible)
    box = struct.pack(">I", 8 + len(body)) + b"ftyp" + body
    meta = struct.pack(">I", 40) + b"meta" + b"\0\0\0\0" + struct.pack(">I", 28) + b"hdlr" + b"\0" * 8 + b"pict" + b"\0" * 8
    return box + meta + b"\0" * 200


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) of each segment after SOI; a scan includes its entropy-coded data."""
    segments, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            segments.append((marker, data[pos : pos + 2]))
            break
        end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not RSTn
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        segments.append((marker, data[pos:end]))
        pos = end
    return segments


def scan_bomb(width: int = 4000, height: int = 3000, scans: int = 4000) -> bytes:
    """A progressive JPEG with one cheap AC scan repeated ``scans`` times: a few bytes each
    (end-of-band runs), but every one is a pass of libjpeg over every block of the picture.
    Within the pixel limit; without a scan limit this one costs seconds of CPU to decode, and
    the same at 20 MB costs minutes."""
    cells = np.random.default_rng(1).integers(0, 256, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(cells).resize((width, height), Image.Resampling.BILINEAR)  # smooth: no high frequencies
    data = encoded(image, "JPEG", quality=50, progressive=True)
    segments = jpeg_segments(data)
    # the smallest scan that refines AC coefficients (spectral start Ss > 0)
    ac_scans = [body for marker, body in segments if marker == 0xDA and body[5 + 2 * body[4]] > 0]
    cheap = min(ac_scans, key=len)
    head = data[:2] + b"".join(body for marker, body in segments if marker != 0xD9)
    return head + cheap * scans + b"\xff\xd9"


def sixteen_bit_png() -> tuple[bytes, np.ndarray]:
    values = np.zeros((48, 64), dtype=np.uint16)
    values[:, :16] = 65535
    values[:, 16:32] = 32768
    values[:, 32:48] = 257 * 64
    data = encoded(Image.fromarray(values), "PNG")
    grey = np.array([255] * 16 + [128] * 16 + [64] * 16 + [0] * 16, dtype=np.uint8)
    reference = np.repeat(np.broadcast_to(grey, (48, 64))[..., None], 3, axis=2)
    return data, np.ascontiguousarray(reference)


def many_frames_gif(frames: int = 1000, side: int = 48) -> tuple[bytes, np.ndarray]:
    images = []
    for k in range(frames):
        grey = np.zeros((side, side), dtype=np.uint8)
        grey[:, : side // 2] = 200
        grey.flat[(k * 37) % grey.size] = 1 + k % 250  # every frame different
        images.append(Image.fromarray(grey, "L"))
    data = encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    first = np.asarray(images[0].convert("RGB"))
    return data, first


# -- the corpus -----------------------------------------------------------------------------------


def _build() -> list[Case]:
    cases: list[Case] = []
    photo = portrait()
    height, width = photo.shape[:2]
    photo_jpeg = encoded(Image.fromarray(photo), "JPEG", quality=92)

    cases.append(Case("empty-file", b"", EmptyImage, "a 0-byte file"))
    cases.append(Case("truncated-jpeg", photo_jpeg[: len(photo_jpeg) // 2], CorruptImage, "a JPEG cut in half"))
    cases.append(Case("truncated-jpeg-header", photo_jpeg[:120], CorruptImage, "a JPEG cut inside its headers"))
    cases.append(Case("jpeg-soi-then-garbage", b"\xff\xd8\xff\xe0" + np.random.default_rng(5).bytes(4000), CorruptImage, "JPEG magic, then noise"))

    bad_crc = bytearray(encoded(Image.fromarray(photo), "PNG"))
    bad_crc[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    cases.append(Case("png-bad-header-crc", bytes(bad_crc), CorruptImage, "a PNG whose IHDR fails its CRC"))

    cases.append(Case("png-bomb-60000x60000", png_bomb(60000, 60000), TooManyPixels, "decompression bomb: 3.6 G pixels in a tiny PNG"))
    cases.append(Case("png-bomb-8000x8000", png_bomb(8000, 8000), TooManyPixels, "64 M pixels: over our limit, under Pillow's own"))
    sof = bytearray(photo_jpeg)
    at = sof.find(b"\xff\xc0")
    sof[at + 5 : at + 9] = struct.pack(">HH", 65500, 65500)
    cases.append(Case("jpeg-bomb-65500x65500", bytes(sof), TooManyPixels, "a JPEG whose SOF claims 65500x65500"))

    cases.append(Case("jpeg-scan-bomb", scan_bomb(), TooComplex, "a progressive JPEG with 4000 repeated scans: seconds of CPU in 540 KB (minutes at 20 MB)"))

    gif, first = many_frames_gif()
    cases.append(Case("gif-1000-frames", gif, OK, "an animated GIF with 1000 frames: the first one is used", (48, 48), first, 1.0))

    cmyk = Image.fromarray(photo).convert("CMYK")
    cases.append(
        Case("cmyk-jpeg", encoded(cmyk, "JPEG", quality=95), OK, "a print-shop CMYK JPEG", (height, width), np.asarray(cmyk.convert("RGB")), 6.0)
    )

    data, reference = sixteen_bit_png()
    cases.append(Case("png-16-bit", data, OK, "a 16-bit greyscale PNG: scaled, not clipped", (48, 64), reference, 1.0))

    rgba = np.dstack([photo, np.full((height, width), 255, np.uint8)])
    rgba[: height // 2, :, 3] = 0  # the top half fully transparent
    flattened = photo.copy()
    flattened[: height // 2] = 255
    cases.append(Case("png-with-alpha", encoded(Image.fromarray(rgba, "RGBA"), "PNG"), OK, "transparency: flattened onto white", (height, width), flattened, 1.0))

    stored = blocks(96, 144)
    for orientation, turn in UPRIGHT.items():
        upright = np.ascontiguousarray(turn(stored))
        data = encoded(Image.fromarray(stored), "JPEG", quality=95, exif=exif_bytes(t0112=orientation))
        cases.append(Case(f"exif-orientation-{orientation}", data, OK, f"EXIF orientation {orientation}", upright.shape[:2], upright, 6.0))

    huge = exif_bytes(t010E="A" * 60000, t0112=1, t010F="Hostile camera")
    data = encoded(Image.fromarray(photo), "JPEG", quality=92, exif=huge)
    assert len(huge) > 60000 and len(data) > 60000
    cases.append(Case("huge-exif", data, OK, "a JPEG carrying ~60 KB of EXIF", (height, width), photo, 8.0))

    # An EXIF block whose first IFD claims 65535 entries and points outside the block.
    broken = b"Exif\0\0MM\0*\0\0\0\x08\xff\xff" + b"\x01\x12\0\x03\xff\xff\xff\xff\x7f\xff\xff\xf0" * 8
    data = encoded(Image.fromarray(photo), "JPEG", quality=92, exif=broken)
    cases.append(Case("malformed-exif", data, OK, "an EXIF IFD with absurd counts and offsets", (height, width), photo, 8.0))

    cases.append(Case("heic-truncated", ftyp(b"heic", [b"mif1", b"heic"]), CorruptImage, "an iPhone HEIC cut after its first boxes"))
    cases.append(Case("avif-truncated", ftyp(b"avif", [b"avif", b"mif1", b"miaf"]), CorruptImage, "an AVIF cut after its first boxes"))
    svg = b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000"><rect width="100%" height="100%" fill="red"/></svg>\n'
    cases.append(Case("svg-renamed-jpg", svg, UnsupportedFormat, "an SVG renamed .jpg"))
    pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    cases.append(Case("pdf-renamed-jpg", pdf, UnsupportedFormat, "a PDF renamed .jpg"))
    cases.append(Case("text-renamed-jpg", b"Dear Darkroom,\nthis is not a photo at all.\n" * 20, UnsupportedFormat, "plain text renamed .jpg"))
    cases.append(Case("tiff-renamed-jpg", encoded(Image.fromarray(photo), "TIFF"), UnsupportedFormat, "a TIFF (Pillow could read it; we do not)"))
    cases.append(Case("bmp-renamed-jpg", encoded(Image.fromarray(photo), "BMP"), UnsupportedFormat, "a BMP"))
    docx = zip_bytes(
        {
            "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
            "word/document.xml": b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body/></w:document>',
        }
    )
    cases.append(Case("word-document", docx, UnsupportedFormat, "a non-image document (.docx)"))

    polyglot = photo_jpeg + zip_bytes({"payload.sh": b"#!/bin/sh\necho pwned\n"})
    cases.append(Case("jpeg-zip-polyglot", polyglot, OK, "a valid JPEG with a ZIP appended", (height, width), photo, 8.0))

    cases.append(Case("one-pixel", encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), TooSmall, "a 1x1 image"))
    cases.append(Case("strip-20000x20", encoded(Image.new("L", (20000, 20), 128), "PNG"), TooSmall, "a 20000x20 strip"))
    cases.append(Case("strip-20x20000", encoded(Image.new("L", (20, 20000), 128), "PNG"), TooSmall, "a 20x20000 strip"))

    oversized = photo_jpeg + b"\0" * (20 * 1024 * 1024 + 1 - len(photo_jpeg))
    cases.append(Case("over-20-mib", oversized, TooManyBytes, "a JPEG padded past 20 MiB"))

    # and the plain ones, to be sure the corpus does not only test refusals
    cases.append(Case("plain-jpeg", photo_jpeg, OK, "an ordinary JPEG", (height, width), photo, 8.0))
    cases.append(Case("plain-webp", encoded(Image.fromarray(photo), "WEBP", lossless=True), OK, "an ordinary WebP", (height, width), photo, 0.5))
    cases.append(Case("progressive-jpeg", encoded(Image.fromarray(photo), "JPEG", quality=92, progressive=True), OK, "a progressive JPEG", (height, width), photo, 8.0))

    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[Case, ...]:
    return tuple(_build())


CORPUS_NAMES = [case.name for case in corpus()]


def case(name: str) -> Case:
    for found in corpus():
        if found.name == name:
            return found
    raise KeyError(name)
