"""Photos as iPhones and newer phones send them as files: HEIC/HEIF and AVIF, decoded in memory
under the same limits as every other format (samples made here, nothing downloaded)."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from inference.errors import CorruptImage, TooManyPixels
from inference.imageio import DecodeLimits, decode


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def photo(grace_rgb) -> np.ndarray:
    return np.asarray(Image.fromarray(grace_rgb).resize((240, 280), Image.Resampling.LANCZOS))


def heic(rgb: np.ndarray, **kwargs) -> bytes:
    out = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(rgb)).save(out, quality=90, **kwargs)
    return out.getvalue()


def avif(rgb: np.ndarray, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "AVIF", quality=90, **save)
    return out.getvalue()


@pytest.mark.parametrize("encode", [heic, avif], ids=["heic", "avif"])
def test_heic_and_avif_decode_to_the_picture(photo, encode):
    data = encode(photo)
    got = decode(data)
    assert got.shape == photo.shape and got.dtype == np.uint8
    assert psnr(got, photo) > 30


def test_a_rotated_heic_is_turned_upright(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    got = decode(heic(photo, exif=exif.tobytes()))
    assert got.shape == (photo.shape[1], photo.shape[0], 3)


@pytest.mark.parametrize("encode", [heic, avif], ids=["heic", "avif"])
def test_too_many_pixels_are_refused_before_decoding(photo, encode, monkeypatch):
    data = encode(photo)
    loaded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(self) or None)
    with pytest.raises(TooManyPixels):
        decode(data, DecodeLimits(max_pixels=240 * 280 - 1))
    assert loaded == []


@pytest.mark.parametrize("encode", [heic, avif], ids=["heic", "avif"])
def test_large_ones_are_brought_down_to_the_working_size(photo, encode):
    big = np.asarray(Image.fromarray(photo).resize((960, 1120)))
    assert decode(encode(big), DecodeLimits(max_side=320)).shape == (320, 274, 3)


@pytest.mark.parametrize("encode", [heic, avif], ids=["heic", "avif"])
def test_a_truncated_one_is_corrupt_not_unsupported(photo, encode):
    data = encode(photo)
    with pytest.raises(CorruptImage):
        decode(data[: len(data) // 2])
