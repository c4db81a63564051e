"""The steps around the network do their work in place and only where it is needed, with the
same pictures as the straightforward way."""

from __future__ import annotations

import numpy as np
import pytest

from inference.engine import _faces_region, blend
from inference.faces import Face, face_mask
from inference.networks import _network_input


def full_frame_blend(original, styled, strength, faces, face_strength):
    """The formula over the whole picture (what `blend` did before it worked in place)."""
    alpha = strength * (1 - face_mask(*original.shape[:2], faces) * (1 - face_strength))[..., None]
    return np.clip(styled * alpha + original * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "faces, strength, face_strength",
    [
        ([Face(488, 123, 184, 184)], 1.0, 0.55),  # the load benchmark's portrait
        ([Face(300, 200, 250, 260), Face(800, 420, 160, 170)], 0.7, 0.3),
        ([Face(1150, 850, 200, 200)], 1.0, 0.5),  # past the corner
        ([Face(0, 0, 1100, 900)], 0.8, 0.6),  # the whole picture
        ([], 0.6, 0.5),
    ],
)
def test_blend_in_place_matches_the_whole_frame_formula(faces, strength, face_strength):
    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8)
    styled = rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8)
    expected = full_frame_blend(original, styled, strength, faces, face_strength)
    out = blend(original, styled, strength, faces, face_strength)
    assert out is styled  # written into the styled array, no full-size copy
    difference = np.abs(out.astype(np.int16) - expected)
    # the mask is drawn on a finer canvas over the faces' region: a few grey levels apart at most
    # (on noise, where styled and original differ by up to 255); elsewhere OpenCV's rounding
    assert difference.max() <= 16 and difference.mean() < 0.3
    if faces:  # and the whole-frame mask is 0 outside that region: nothing is cut off
        top, bottom, left, right = _faces_region(960, 1280, faces)
        outside = face_mask(960, 1280, faces)
        outside[top:bottom, left:right] = 0
        assert outside.max() < 1e-3


def test_the_network_input_fills_a_reused_buffer_completely():
    rgb = np.random.default_rng(2).integers(0, 256, (301, 257, 3), dtype=np.uint8)
    fresh = _network_input(rgb)
    stale = np.full_like(fresh, 7.0)
    reused = _network_input(rgb, stale)
    assert reused is stale and np.array_equal(reused, fresh)
    other = _network_input(rgb[:200], stale)  # another size: a new buffer
    assert other is not stale and other.shape != stale.shape
