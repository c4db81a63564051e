"""Image input and output, in memory only.

`decode` turns untrusted bytes into an RGB array, refusing what is too big *before* any pixel
is decoded. `encode_jpeg` writes a fresh JPEG that carries none of the input's metadata (no
EXIF, GPS or ICC) and an honest AI label in XMP. Nothing here touches the file system.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from .errors import (
    CorruptImage,
    EmptyImage,
    TooManyBytes,
    TooManyPixels,
    TooSmall,
    UnsupportedFormat,
)

# Formats people actually send as photos (a phone's multi-picture JPEG opens as JPEG; an
# iPhone's HEIC, and AVIF, arrive when sent as files). Everything else (SVG, PDF, TIFF, ...) is
# refused by name instead of being handed to a less-travelled decoder. HEIF is read by
# pillow-heif (libheif), AVIF by Pillow itself; both go through the same limits as the rest.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "HEIF", "AVIF")
Image.init()  # register every plugin once, so `formats=` can name WebP and AVIF
# No thumbnails, depth maps or auxiliary images: only the primary picture is ever decoded.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# IPTC Digital Source Type terms (https://cv.iptc.org/newscodes/digitalsourcetype/).
# A neural restyling of a captured photo mixes trained-model output with the capture (strength,
# face protection and colour keeping all blend the two), which is what
# "compositeWithTrainedAlgorithmicMedia" describes; it is not pure generation
# ("trainedAlgorithmicMedia"). A hand-written filter changes the look of the capture by an
# algorithm without trained weights: "algorithmicallyEnhanced".
SOURCE_NEURAL = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
SOURCE_FILTER = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicallyEnhanced"


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side: int = 1280
    min_side: int = 32


@dataclass(frozen=True)
class AILabel:
    """What the output says about itself, in XMP."""

    digital_source_type: str
    style_name: str
    software: str

    def xmp(self) -> bytes:
        description = f"AI-styled image ({self.style_name}), made with {self.software}"
        packet = (
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about=""'
            ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
            ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:darkroom="urn:darkroom:xmp:1.0:"'
            f" Iptc4xmpExt:DigitalSourceType={quoteattr(self.digital_source_type)}"
            f" xmp:CreatorTool={quoteattr(self.software)}"
            f" darkroom:Style={quoteattr(self.style_name)}>"
            "<dc:description><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{escape(description)}</rdf:li>'
            "</rdf:Alt></dc:description>"
            "</rdf:Description></rdf:RDF></x:xmpmeta>"
            '<?xpacket end="r"?>'
        )
        return packet.encode("utf-8")


def decode(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """Return the picture in ``data`` as a C-contiguous HxWx3 uint8 RGB array.

    EXIF orientation is applied, transparency is flattened onto white, any mode becomes RGB,
    and the long side is brought down to ``limits.max_side``.
    """
    if not data:
        raise EmptyImage("no bytes")
    if len(data) > limits.max_bytes:
        raise TooManyBytes(f"{len(data)} bytes > {limits.max_bytes}")
    with warnings.catch_warnings():
        # Pillow warns (rather than raises) between 1x and 2x MAX_IMAGE_PIXELS: our own limit is
        # the one that decides. It also warns about broken metadata in the file ("Corrupt EXIF
        # data", ...): news for nobody, and it must not reach the operator's stderr once per
        # hostile file; what counts is the picture or the typed error below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        image = _decode(data, limits)
    if min(image.size) < limits.min_side:
        raise TooSmall(f"{image.size[0]}x{image.size[1]} after fitting to {limits.max_side}")
    # A writable array of our own, so the caller can zero it when the picture is released.
    return np.array(image, dtype=np.uint8, order="C")


def _decode(data: bytes, limits: DecodeLimits) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from None
    except UnidentifiedImageError:
        # Pillow says "unidentified" both for other formats and for one of ours whose header is
        # damaged (a bad PNG CRC, a JPEG cut after its first bytes): tell them apart by the
        # signature, so a damaged photo is not answered with "send a JPEG".
        known = _signature(data)
        if known:
            raise CorruptImage(f"damaged {known} header") from None
        raise UnsupportedFormat("not a JPEG, PNG, WebP, GIF, HEIC or AVIF picture") from None
    except Exception as exc:  # hostile headers make Pillow raise nearly anything
        raise CorruptImage(type(exc).__name__) from None

    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptImage("zero-sized image")
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"{width}x{height} > {limits.max_pixels} pixels")

    try:
        if image.format in ("JPEG", "MPO"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is far larger than we
            # work at: less memory and much less time than decoding in full and resizing.
            scale = limits.max_side / max(width, height)
            if scale < 1:
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        if image.size[0] * image.size[1] > limits.max_pixels:  # a frame may grow the canvas
            raise TooManyPixels(f"{image.size[0]}x{image.size[1]} > {limits.max_pixels} pixels")
        image = _apply_orientation(image)
        image = _to_rgb(image)
        return _fit(image, limits.max_side)
    except TooManyPixels:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from None
    except Exception as exc:
        raise CorruptImage(type(exc).__name__) from None


def _signature(data: bytes) -> str:
    """The accepted format whose signature ``data`` starts with, or ''."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":  # ISO base media file: the brand says which
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
    return ""


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        # In place: without an orientation tag nothing is copied (the default returns a full
        # copy of the picture, which for a large PNG is hundreds of MB for nothing).
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # A broken EXIF block is no reason to refuse the picture; it only loses its rotation.
        pass
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    transparency = image.info.get("transparency")
    if mode == "RGB" and transparency is None:
        return image
    if mode.startswith("I;16"):
        # 16-bit samples always span 0..65535: scale by hand (Pillow's own I;16 -> L
        # conversion clips at 255 instead of scaling), also when a dark picture never
        # exceeds 255.
        values = np.asarray(image)
        wide = values.astype(np.uint32)
        wide *= 255
        wide += 32767
        wide //= 65535
        grey = wide.astype(np.uint8)
        del wide
        if isinstance(transparency, int):  # a tRNS colour key: that grey is transparent
            grey[values == transparency] = 255
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if transparency is not None or mode == "PA" else "RGB")
    elif mode in ("1", "L", "RGB") and transparency is not None:
        image = image.convert("RGBA")  # a tRNS colour key becomes alpha, flattened below
    elif mode in ("RGBa", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        # Flatten onto white by pasting through the alpha channel: one RGB image the size of
        # the picture, instead of RGBA copies for a white canvas and alpha_composite.
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, (0, 0), image)
        return white
    return image.convert("RGB")


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_jpeg(
    rgb: np.ndarray,
    label: AILabel,
    quality: int = 90,
    visible_label: bool = False,
) -> bytes:
    """Encode ``rgb`` as a new JPEG: no EXIF, no GPS, no ICC; XMP AI label only."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if visible_label:
        _draw_corner_mark(image, "AI")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, xmp=label.xmp())
    return out.getvalue()


def _draw_corner_mark(image: Image.Image, text: str) -> None:
    width, height = image.size
    size = max(10, min(width, height) // 28)
    try:
        font = ImageFont.load_default(size=size)
    except Exception:  # Pillow built without FreeType
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(image, "RGBA")
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 4)
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    x0, y0 = width - box_w - pad, height - box_h - pad
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(0, 0, 0, 140))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=(255, 255, 255, 230))
