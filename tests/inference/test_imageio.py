"""Decoding untrusted bytes and encoding the labelled output (inference/imageio.py).

Every test here builds its pictures in memory; nothing is read from or written to disk.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from defusedxml import ElementTree
from PIL import Image, ImageCms

from inference import Engine, EngineConfig, StyleRequest
from inference.errors import CorruptImage, TooManyBytes, TooManyPixels, TooSmall, UnsupportedFormat
from inference.imageio import SOURCE_FILTER, SOURCE_NEURAL, AILabel, DecodeLimits, decode, decode_here, encode_jpeg
from tests.hostile.corpus import encoded, png_chunk

LABEL = AILabel(SOURCE_FILTER, "Test style", "Darkroom test")
IPTC_EXT = "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}"
XMP_NS = "{http://ns.adobe.com/xap/1.0/}"
DARKROOM_NS = "{urn:darkroom:xmp:1.0:}"
RDF_NS = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


# -- builders ---------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim ``width`` x ``height``."""
    data = bytearray(encoded(Image.new("RGB", (64, 48), (120, 80, 40)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def asymmetric(height: int = 34, width: int = 50) -> np.ndarray:
    """Random pixels: every flip and rotation of this is a different array."""
    return np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)


def blocky(height: int = 64, width: int = 96, block: int = 16) -> np.ndarray:
    """Flat 16x16 blocks of distinct colours: survives JPEG with small errors, still asymmetric."""
    cells = np.random.default_rng(11).integers(0, 256, (height // block, width // block, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((block, block, 1), dtype=np.uint8))


def with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@contextlib.contextmanager
def no_pixel_decoding(monkeypatch):
    """Fails the test if any decoder is created or any pixel storage is allocated inside."""
    decoders = []
    real = Image._getdecoder

    def spy(*args, **kwargs):
        decoders.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(Image, "_getdecoder", spy)
    Image.core.reset_stats()
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert decoders == [], f"a decoder was created: {decoders}"
    assert Image.core.get_stats()["new_count"] == 0, "Pillow allocated pixel storage"
    assert peak < 2 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"


def vm_peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


# -- limits before decoding -------------------------------------------------------------------


def test_byte_limit_refuses_before_pillow_even_looks(monkeypatch):
    data = encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    assert decode(data, DecodeLimits(max_bytes=len(data))).shape == (64, 64, 3)

    def never(*args, **kwargs):
        raise AssertionError("Image.open was called for an oversized input")

    monkeypatch.setattr(Image, "open", never)
    with pytest.raises(TooManyBytes):
        decode(data, DecodeLimits(max_bytes=len(data) - 1))


def test_default_byte_limit_is_twenty_mebibytes(monkeypatch):
    monkeypatch.setattr(Image, "open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("opened")))
    with pytest.raises(TooManyBytes):
        decode(b"\xff\xd8\xff" + bytes(20 * 1024 * 1024))


def test_png_decompression_bomb_is_refused_from_its_header(monkeypatch):
    bomb = png_claiming(60000, 60000)
    assert len(bomb) < 200  # a few bytes that would decode to 10.8 GB of pixels
    with no_pixel_decoding(monkeypatch):  # in this process, where Pillow can be watched
        with pytest.raises(TooManyPixels):
            decode_here(bomb)
    with pytest.raises(TooManyPixels):  # and the same through the decode child
        decode(bomb)


def test_jpeg_decompression_bomb_is_refused_from_its_header(monkeypatch):
    bomb = jpeg_claiming(65500, 65500)
    with no_pixel_decoding(monkeypatch):  # in this process, where Pillow can be watched
        with pytest.raises(TooManyPixels):
            decode_here(bomb)
    with pytest.raises(TooManyPixels):  # and the same through the decode child
        decode(bomb)


@pytest.mark.parametrize("maker", [png_claiming, jpeg_claiming])
def test_our_own_pixel_limit_refuses_where_pillow_would_only_warn(monkeypatch, maker):
    # 8000 x 8000 = 64 M pixels: over our 50 M limit, under Pillow's own error threshold (179 M),
    # so this is our check, not Pillow's, and it happens before any pixel is decoded.
    data = maker(8000, 8000)
    with no_pixel_decoding(monkeypatch):  # in this process, where Pillow can be watched
        with pytest.raises(TooManyPixels):
            decode_here(data)
    with pytest.raises(TooManyPixels):  # and the same through the decode child
        decode(data)


def test_pixel_limit_is_configurable_and_exact(monkeypatch):
    data = encoded(Image.fromarray(asymmetric(100, 100)), "PNG")
    assert decode(data, DecodeLimits(max_pixels=10_000)).shape == (100, 100, 3)
    with no_pixel_decoding(monkeypatch):  # in this process, where Pillow can be watched
        with pytest.raises(TooManyPixels):
            decode_here(data, DecodeLimits(max_pixels=9_999))
    with pytest.raises(TooManyPixels):  # and the same through the decode child
        decode(data, DecodeLimits(max_pixels=9_999))


def test_large_transparent_png_is_flattened_without_extra_full_size_copies():
    """A 3000x3000 RGBA PNG is 36 MB decoded (a few KB on the wire). Decoding it must not keep
    several full-size copies alive at once (no copy for a missing EXIF rotation, no RGBA white
    canvas, no alpha_composite result): peak resident memory stays under 3x the decoded size."""
    side = 3000
    data = encoded(Image.new("RGBA", (side, side), (200, 10, 10, 128)), "PNG")
    if not vm_peak_reset():
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    before = vm_status("VmRSS")
    rgb = decode_here(data)  # in this process, so that its peak RSS is the one measured
    grown = vm_status("VmHWM") - before
    assert rgb.shape == (1280, 1280, 3)
    assert np.abs(rgb[600, 600].astype(int) - (228, 132, 132)).max() <= 2  # 50 % red over white
    decoded_size = side * side * 4
    assert grown < 3 * decoded_size, f"peak grew by {grown / 1e6:.0f} MB for a {decoded_size / 1e6:.0f} MB picture"


# -- orientation ------------------------------------------------------------------------------

# What the EXIF Orientation tag says about the stored pixels S, written out in numpy so it does
# not lean on Pillow's own table.
UPRIGHT = {
    1: lambda s: s,
    2: lambda s: s[:, ::-1],  # mirrored left-right
    3: lambda s: s[::-1, ::-1],  # rotated 180
    4: lambda s: s[::-1, :],  # mirrored top-bottom
    5: lambda s: s.transpose(1, 0, 2),  # row 0 is the left side, column 0 the top
    6: lambda s: np.rot90(s, -1),  # row 0 is the right side: turn clockwise
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2),  # row 0 is the right side, column 0 the bottom
    8: lambda s: np.rot90(s, 1),  # row 0 is the left side: turn counter-clockwise
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_pixels(orientation):
    stored = asymmetric()
    data = encoded(Image.fromarray(stored), "PNG", exif=with_orientation(orientation))
    out = decode(data)
    expected = UPRIGHT[orientation](stored)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_in_a_jpeg(orientation):
    stored = blocky()
    data = encoded(Image.fromarray(stored), "JPEG", quality=95, exif=with_orientation(orientation))
    out = decode(data).astype(np.int16)
    expected = UPRIGHT[orientation](stored).astype(np.int16)
    assert out.shape == expected.shape
    error = np.abs(out - expected).mean()
    assert error < 6, f"mean error {error:.1f}"
    # and it is not merely "some" orientation: the stored (unrotated) picture is far off
    if out.shape == stored.shape:
        assert np.abs(out - stored.astype(np.int16)).mean() > 3 * error + 10


def test_broken_exif_does_not_refuse_the_picture_and_stays_quiet():
    stored = asymmetric()
    broken = b"Exif\0\0MM\0*\0\0\0\x08\xff\xff" + b"\x01\x12\0\x03\xff\xff\xff\xff\x7f\xff\xff\xf0" * 3
    data = encoded(Image.fromarray(stored), "JPEG", exif=broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decode(data)
    assert out.shape == stored.shape
    # Pillow's notes about the broken block must not end up on the operator's stderr
    assert [str(w.message) for w in caught] == []


# -- every mode to RGB ------------------------------------------------------------------------


def assert_rgb_array(out: np.ndarray, height: int, width: int) -> None:
    assert out.dtype == np.uint8
    assert out.shape == (height, width, 3)
    assert out.flags.c_contiguous and out.flags.writeable


def test_rgba_is_flattened_onto_white():
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[:, :20] = (10, 200, 30, 255)  # opaque green
    rgba[:, 20:40] = (0, 0, 0, 0)  # fully transparent black
    rgba[:, 40:] = (0, 0, 0, 128)  # half-transparent black
    out = decode(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert_rgb_array(out, 40, 60)
    assert (out[:, :20] == (10, 200, 30)).all()
    assert (out[:, 20:40] == 255).all()
    assert np.abs(out[:, 40:].astype(int) - 127).max() <= 1


def test_la_is_flattened_onto_white():
    la = np.zeros((40, 40, 2), dtype=np.uint8)
    la[:20] = (50, 255)
    la[20:] = (0, 0)
    out = decode(encoded(Image.fromarray(la, "LA"), "PNG"))
    assert_rgb_array(out, 40, 40)
    assert (out[:20] == 50).all()
    assert (out[20:] == 255).all()


def paletted(transparent: bool) -> Image.Image:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    image.paste(1, (0, 0, 20, 40))  # left half red
    image.paste(2, (20, 0, 40, 20))  # top right blue, bottom right index 0 (black)
    if transparent:
        image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_without_transparency(fmt):
    out = decode(encoded(paletted(False), fmt))
    assert_rgb_array(out, 40, 40)
    assert (out[:, :20] == (255, 0, 0)).all()
    assert (out[:20, 20:] == (0, 0, 255)).all()
    assert (out[20:, 20:] == (0, 0, 0)).all()


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_flattened_onto_white(fmt):
    out = decode(encoded(paletted(True), fmt, transparency=0))
    assert_rgb_array(out, 40, 40)
    assert (out[:, :20] == (255, 0, 0)).all()
    assert (out[:20, 20:] == (0, 0, 255)).all()
    assert (out[20:, 20:] == 255).all(), "the transparent index must become white, not black"


def test_rgb_png_with_a_transparent_colour_key_is_flattened_onto_white():
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    rgb[:, :20] = (30, 60, 90)
    out = decode(encoded(Image.fromarray(rgb), "PNG", transparency=(0, 0, 0)))
    assert (out[:, :20] == (30, 60, 90)).all()
    assert (out[:, 20:] == 255).all()


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red in ink terms
    cmyk.paste((0, 0, 0, 255), (32, 0, 64, 64))  # black ink
    assert Image.open(io.BytesIO(encoded(cmyk, "JPEG", quality=95))).mode == "CMYK"
    out = decode(encoded(cmyk, "JPEG", quality=95)).astype(int)
    assert_rgb_array(out.astype(np.uint8), 64, 64)
    assert np.abs(out[:, :24] - (255, 0, 0)).max() <= 12
    assert np.abs(out[:, 40:] - (0, 0, 0)).max() <= 12


def sixteen_bit(values: np.ndarray) -> bytes:
    data = encoded(Image.fromarray(values.astype(np.uint16)), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    return data


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.zeros((40, 40), dtype=np.uint16)
    values[:, :10] = 65535
    values[:, 10:20] = 32768
    values[:, 20:30] = 257 * 100
    values[:, 30:] = 0
    out = decode(sixteen_bit(values)).astype(int)
    assert_rgb_array(out.astype(np.uint8), 40, 40)
    assert (out[:, :10] == 255).all()
    assert (np.abs(out[:, 10:20] - 128) <= 1).all()
    assert (out[:, 20:30] == 100).all()
    assert (out[:, 30:] == 0).all()


def test_dark_sixteen_bit_png_stays_dark():
    # No sample above 255 does not make a 16-bit picture an 8-bit one: 200/65535 is black.
    values = np.full((40, 40), 200, dtype=np.uint16)
    values[:, 20:] = 100
    out = decode(sixteen_bit(values))
    assert out.max() <= 1


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_rgb(mode):
    grey = np.zeros((40, 48), dtype=np.uint8)
    grey[:, 24:] = 255
    image = Image.fromarray(grey, "L").convert(mode)
    out = decode(encoded(image, "PNG"))
    assert_rgb_array(out, 40, 48)
    assert (out[:, :24] == 0).all() and (out[:, 24:] == 255).all()


def test_gif_gives_its_first_frame():
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    frames = [Image.new("RGB", (48, 40), c) for c in colours]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode(data).astype(int)
    assert_rgb_array(out.astype(np.uint8), 40, 48)
    assert np.abs(out - colours[0]).max() <= 8


def test_webp_lossless_is_exact_and_lossy_is_close():
    stored = asymmetric()
    np.testing.assert_array_equal(decode(encoded(Image.fromarray(stored), "WEBP", lossless=True)), stored)
    smooth = blocky()
    out = decode(encoded(Image.fromarray(smooth), "WEBP", quality=95)).astype(int)
    assert np.abs(out - smooth).mean() < 6


def test_other_formats_are_refused_by_name():
    stored = Image.fromarray(asymmetric())
    for fmt in ("TIFF", "BMP", "PPM"):
        with pytest.raises(UnsupportedFormat):
            decode(encoded(stored, fmt))


def test_damaged_header_of_an_accepted_format_is_corrupt_not_unsupported():
    png = bytearray(encoded(Image.fromarray(asymmetric()), "PNG"))
    png[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    with pytest.raises(CorruptImage):
        decode(bytes(png))
    with pytest.raises(CorruptImage):
        decode(b"\xff\xd8\xff\xe0" + bytes(50))


# -- size -------------------------------------------------------------------------------------


def test_max_side_downscales_and_keeps_aspect():
    image = Image.new("RGB", (2000, 1000), (255, 0, 0))
    image.paste((0, 0, 255), (1000, 0, 2000, 1000))
    out = decode(encoded(image, "PNG"))
    assert out.shape == (640, 1280, 3)
    assert tuple(out[320, 600]) == (255, 0, 0) and tuple(out[320, 680]) == (0, 0, 255)
    tall = decode(encoded(Image.new("RGB", (300, 900)), "PNG"), DecodeLimits(max_side=500))
    assert tall.shape == (500, 167, 3)


def test_large_jpeg_is_brought_down_to_max_side():
    out = decode(encoded(Image.new("RGB", (4000, 3000), (90, 140, 190)), "JPEG"))
    assert out.shape == (960, 1280, 3)
    assert np.abs(out.astype(int) - (90, 140, 190)).max() <= 4


def test_small_pictures_are_not_upscaled():
    assert decode(encoded(Image.new("RGB", (300, 200)), "PNG")).shape == (200, 300, 3)


@pytest.mark.parametrize(
    "size",
    [(1, 1), (20000, 20), (20, 20000), (31, 400), (400, 31)],
    ids=["1x1", "20000x20 strip", "20x20000 strip", "31 wide", "31 high"],
)
def test_too_small_or_too_narrow_is_refused(size):
    with pytest.raises(TooSmall):
        decode(encoded(Image.new("L", size, 128), "PNG"))


def test_min_side_boundary_is_accepted():
    assert decode(encoded(Image.new("RGB", (32, 32)), "PNG")).shape == (32, 32, 3)


# -- encoding ---------------------------------------------------------------------------------

MARKERS = {
    "make": b"CanaryCameraMake-7f3a",
    "gps_ref": b"CanaryGPSArea-51c2",
    "xmp": b"CanaryXMPCreator-9b1e",
    "comment": b"CanaryComment-0d44",
}


def photo_with_metadata() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = MARKERS["make"].decode()
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 0.0), 28: MARKERS["gps_ref"].decode()}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + MARKERS["xmp"] + b"</x:xmpmeta>"
    data = encoded(
        Image.fromarray(blocky(96, 128)), "JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc, xmp=xmp, comment=MARKERS["comment"]
    )
    # the input really carries everything the output must not
    opened = Image.open(io.BytesIO(data))
    assert opened.getexif().get_ifd(0x8825)[2] == (52.0, 31.0, 12.5)
    assert opened.info.get("icc_profile") == icc
    assert all(marker in data for marker in MARKERS.values())
    assert b"ICC_PROFILE" in data and b"acsp" in data
    return data


def assert_no_input_metadata(out: bytes) -> None:
    opened = Image.open(io.BytesIO(out))
    assert opened.format == "JPEG"
    assert "exif" not in opened.info
    assert "icc_profile" not in opened.info
    assert "comment" not in opened.info
    assert len(opened.getexif()) == 0
    assert opened.getexif().get_ifd(0x8825) == {}
    for needle in (*MARKERS.values(), b"Exif\0\0", b"ICC_PROFILE", b"acsp", b"lcms"):
        assert needle not in out, needle


def test_encode_jpeg_carries_no_metadata_from_the_input():
    out = encode_jpeg(decode(photo_with_metadata()), LABEL)
    assert_no_input_metadata(out)
    assert "xmp" in Image.open(io.BytesIO(out)).info  # the label, and only the label


@pytest.mark.parametrize("style", ["ink", "pencil"])
def test_engine_output_carries_no_metadata_from_the_input(engine, style):
    result = engine.stylize(photo_with_metadata(), StyleRequest(style, face_aware=False))
    assert_no_input_metadata(result.jpeg)


def xmp_description(jpeg: bytes):
    xmp = Image.open(io.BytesIO(jpeg)).info["xmp"]
    root = ElementTree.fromstring(xmp)
    [description] = root.iter(f"{RDF_NS}Description")
    return description


@pytest.mark.parametrize(
    ("style", "source", "name"),
    [
        ("ink", "compositeWithTrainedAlgorithmicMedia", "Ink wash"),
        ("pencil", "algorithmicallyEnhanced", "Pencil sketch"),
    ],
)
def test_output_carries_the_ai_label_in_xmp(engine, small_portrait, style, source, name):
    result = engine.stylize(small_portrait, StyleRequest(style))
    description = xmp_description(result.jpeg)
    assert description.get(f"{IPTC_EXT}DigitalSourceType") == f"http://cv.iptc.org/newscodes/digitalsourcetype/{source}"
    assert description.get(f"{DARKROOM_NS}Style") == name
    assert description.get(f"{XMP_NS}CreatorTool").startswith("Darkroom")
    text = "".join(description.itertext())
    assert name in text and "Darkroom" in text and "AI" in text


def test_label_sources_are_the_iptc_terms():
    assert SOURCE_NEURAL.endswith("/digitalsourcetype/compositeWithTrainedAlgorithmicMedia")
    assert SOURCE_FILTER.endswith("/digitalsourcetype/algorithmicallyEnhanced")


def test_label_with_markup_in_the_style_name_stays_well_formed_xmp():
    label = AILabel(SOURCE_NEURAL, 'Tom & "Jerry" <b>', "Darkroom")
    out = encode_jpeg(np.full((40, 40, 3), 128, np.uint8), label)
    assert xmp_description(out).get(f"{DARKROOM_NS}Style") == 'Tom & "Jerry" <b>'


def changed_pixels(a: bytes, b: bytes) -> np.ndarray:
    """Coordinates (y, x) where two JPEGs of the same size differ clearly."""
    one = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.int16)
    two = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.int16)
    assert one.shape == two.shape
    return np.argwhere(np.abs(one - two).max(axis=2) > 24)


def assert_mark_in_bottom_right(plain: bytes, marked: bytes, height: int, width: int) -> None:
    changed = changed_pixels(plain, marked)
    assert len(changed) > 40, "the visible label changed (almost) nothing"
    # The bilingual mark ("AI-generated · AI生成") is about a fifth of a 1280-wide result, and a
    # third of these small test pictures, whose text cannot shrink below 10 px.
    assert changed[:, 0].min() > height * 0.8 and changed[:, 1].min() > width * 0.55, "changes outside the corner"


def test_visible_label_marks_only_the_bottom_right_corner():
    rgb = np.full((240, 320, 3), 128, np.uint8)
    plain = encode_jpeg(rgb, LABEL, visible_label=False)
    marked = encode_jpeg(rgb, LABEL, visible_label=True)
    assert_mark_in_bottom_right(plain, marked, 240, 320)


def test_visible_label_is_off_by_default(engine, small_portrait):
    assert EngineConfig().visible_label is False
    rgb = np.full((240, 320, 3), 128, np.uint8)
    assert encode_jpeg(rgb, LABEL) == encode_jpeg(rgb, LABEL, visible_label=False)
    request = StyleRequest("pencil", face_aware=False)
    default = engine.stylize(small_portrait, request)
    marked = Engine(EngineConfig(visible_label=True), catalogue=engine.catalogue).stylize(small_portrait, request)
    assert_mark_in_bottom_right(default.jpeg, marked.jpeg, default.height, default.width)
