"""Face awareness: find faces, and a soft mask over them so the style can step back there.

The detector is MediaPipe's BlazeFace (Apache-2.0), converted to ONNX from the pinned npm package
by tools/convert_blazeface.py and verified by SHA-256 like every model. Two networks:

- short range (128x128, made for selfies: one or two large faces), and
- full range (192x192, faces down to a few percent of the frame, groups).

Both run on every picture and their detections are merged: a selfie is found by the first, a
group counted by the second, and each covers the other's blind spots (short range misses small
faces on a grid; full range is weaker on a face that fills the frame). Unless that found exactly
one large face, full range looks again in 3x3 overlapping tiles, where a face a twentieth of the
picture wide is big enough to be found: "did everyone pictured agree?" needs the right count.

The decoding is MediaPipe's own, from its face_detection_{short,full}_range_common.pbtxt:
SSD anchors (SsdAnchorsCalculator), box regression and sigmoid scores
(TensorsToDetectionsCalculator) and weighted non-maximum suppression
(NonMaxSuppressionCalculator, IoU 0.3). The page does the same in
bot/web/static/blazeface.js; tests/webapp checks the two against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .models import ModelFile, SessionPool

# Where a face counts as the same as another (MediaPipe's min_suppression_threshold).
SUPPRESSION_IOU = 0.3
# A face is kept when its merged score reaches this. MediaPipe's own thresholds (0.5 short range,
# 0.6 full range) still pick the candidates; on the face test set (tests/face_set.py) every true
# face scored 0.72 or more, while three false ones (a rocket's fin, a galaxy, a dark shoulder)
# scored 0.61-0.66.
MIN_FACE_SCORE = 0.7


@dataclass(frozen=True)
class BlazeFaceSpec:
    """One BlazeFace network's input size and decoding options (MediaPipe's pbtxt)."""

    model_key: str
    side: int  # square input, letterboxed
    strides: tuple[int, ...]  # one per anchor layer
    anchors_per_cell: int  # 2 with interpolated_scale_aspect_ratio 1.0, 1 with 0.0
    min_score: float  # min_score_thresh, after the sigmoid

    @cached_property
    def anchors(self) -> np.ndarray:
        """Anchor centres as [N, 2] (x, y) in 0..1; fixed_anchor_size makes every w = h = 1.

        SsdAnchorsCalculator: consecutive layers with the same stride share one feature map, and
        each of them adds ``anchors_per_cell`` anchors per cell (aspect ratio 1.0, and the
        interpolated one when it is on)."""
        centres = []
        layer = 0
        while layer < len(self.strides):
            stride = self.strides[layer]
            repeats = 0
            while layer < len(self.strides) and self.strides[layer] == stride:
                repeats += self.anchors_per_cell
                layer += 1
            cells = -(-self.side // stride)  # ceil
            for y in range(cells):
                for x in range(cells):
                    centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
        return np.asarray(centres, dtype=np.float64)


# face_detection_short_range_common.pbtxt: 896 anchors
SHORT_RANGE = BlazeFaceSpec("face_short_range", 128, (8, 16, 16, 16), 2, 0.5)
# face_detection_full_range_common.pbtxt: 2304 anchors
FULL_RANGE = BlazeFaceSpec("face_full_range", 192, (4,), 1, 0.6)


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    width: int
    height: int
    score: float = 1.0


@dataclass(frozen=True)
class Letterbox:
    """How a picture sits inside the square network input: scaled by ``scale`` (input pixels per
    picture pixel) and moved by (pad_x, pad_y) input pixels."""

    scale: float
    pad_x: int
    pad_y: int


def network_input(rgb: np.ndarray, side: int) -> tuple[np.ndarray, Letterbox]:
    """The picture as a [1, 3, side, side] float32 tensor in -1..1, its long side fitted to
    ``side`` and centred on black (MediaPipe's ImageToTensor with keep_aspect_ratio).

    Each input pixel is the mean of an evenly spread ``m`` x ``m`` grid of picture pixels inside
    it (m up to 3), with integer positions and integer sums, so the page computes exactly the
    same tensor. Averaging every pixel of a 1280x960 picture took 20-30 ms in numpy; 3x3 samples
    take about 1 ms a network and found every face of the test set, 2x2 missed one, 4x4 cost
    another millisecond a photo."""
    height, width = rgb.shape[:2]
    long_side = max(height, width)
    new_w = max(1, round(width * side / long_side))
    new_h = max(1, round(height * side / long_side))
    m = min(3, max(1, long_side // side))
    ys = sample_positions(new_h, height, m)
    xs = sample_positions(new_w, width, m)
    sums = np.zeros((new_h, new_w, 3), dtype=np.uint32)
    for a in range(m):  # m*m small additions: 4x faster here than one reshaped sum
        rows = rgb.take(ys[a::m], axis=0)
        for b in range(m):
            part = rows.take(xs[b::m], axis=1)
            sums += part
            part.fill(0)
        # copies of the photo's own pixel rows: zeroed, not just freed (tests/proofs/test_memory.py)
        rows.fill(0)
    pad_x, pad_y = (side - new_w) // 2, (side - new_h) // 2
    tensor = np.full((1, 3, side, side), -1.0, dtype=np.float32)
    tensor[0, :, pad_y:pad_y + new_h, pad_x:pad_x + new_w] = (sums / (m * m) / 127.5 - 1.0).transpose(2, 0, 1)
    sums.fill(0)
    return tensor, Letterbox(scale=new_w / width if width >= height else new_h / height, pad_x=pad_x, pad_y=pad_y)


def sample_positions(cells: int, length: int, m: int) -> np.ndarray:
    """Where the m samples of each of ``cells`` input pixels fall along a picture side of
    ``length``: at the centres of m equal parts of the cell, rounded down."""
    j = np.repeat(np.arange(cells, dtype=np.int64), m)
    a = np.tile(np.arange(m, dtype=np.int64), cells)
    return ((2 * j * m + 2 * a + 1) * length) // (2 * m * cells)


def decode(regressors: np.ndarray, classificators: np.ndarray, spec: BlazeFaceSpec) -> list[tuple[float, np.ndarray]]:
    """The network's raw outputs ([N, 16] and [N] or [N, 1]) -> (score, [xmin, ymin, xmax, ymax])
    in 0..1 of the network input, above the spec's score threshold and after weighted NMS."""
    # float64 throughout, as the page's JS computes, so both give the same boxes
    raw = np.asarray(regressors, dtype=np.float32).reshape(-1, 16).astype(np.float64)
    # score_clipping_thresh 100, then the sigmoid
    logits = np.clip(np.asarray(classificators, dtype=np.float32).reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.nonzero(scores >= spec.min_score)[0]
    anchors = spec.anchors[keep]
    side = float(spec.side)
    # reverse_output_order: x, y, w, h; scaled by the input size, relative to the anchor
    cx = raw[keep, 0] / side + anchors[:, 0]
    cy = raw[keep, 1] / side + anchors[:, 1]
    w = raw[keep, 2] / side
    h = raw[keep, 3] / side
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    candidates = [(float(scores[i]), boxes[n]) for n, i in enumerate(keep) if w[n] > 0 and h[n] > 0]
    return weighted_nms(candidates)


def weighted_nms(detections: list[tuple[float, np.ndarray]], threshold: float = SUPPRESSION_IOU) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's WEIGHTED non-maximum suppression: take the best remaining detection, gather
    every remaining one overlapping it by more than ``threshold`` IoU (itself included), and
    keep their score-weighted mean box with the best one's score."""
    remaining = sorted(detections, key=lambda d: -d[0])
    kept = []
    while remaining:
        best = remaining[0][1]
        close: list = []
        rest: list = []
        for detection in remaining:
            (close if iou(best, detection[1]) > threshold else rest).append(detection)
        total = 0.0
        box = np.zeros(4)
        for score, b in close:  # summed one by one, in this order, as the page does
            total += score
            box = box + score * b
        box = box / total
        kept.append((remaining[0][0], box))
        remaining = rest
    return kept


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceDetector:
    """BlazeFace short and full range on one picture, merged. Thread-safe: the sessions are
    shared (onnxruntime's run is thread-safe) and everything else is local."""

    def __init__(self, short_range: ModelFile, full_range: ModelFile, sessions: SessionPool) -> None:
        self.models = {SHORT_RANGE: short_range, FULL_RANGE: full_range}
        self.sessions = sessions

    def warm_up(self) -> None:
        for spec, model in self.models.items():
            self.sessions.session(model)
            spec.anchors  # noqa: B018 - computed once, here rather than on a person's photo

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 image, in its own pixel coordinates, largest first."""
        height, width = rgb.shape[:2]
        found = self._run(rgb, SHORT_RANGE) + self._run(rgb, FULL_RANGE)
        faces = weighted_nms(found)
        if needs_tiles(faces, width, height):
            for x0, y0, x1, y1 in tiles(width, height):
                found += [(score, box + (x0, y0, x0, y0)) for score, box in self._run(rgb[y0:y1, x0:x1], FULL_RANGE)]
            faces = weighted_nms(found)
        return faces_from([f for f in faces if f[0] >= MIN_FACE_SCORE], width, height)

    def _run(self, rgb: np.ndarray, spec: BlazeFaceSpec) -> list[tuple[float, np.ndarray]]:
        """One network on one picture: its detections in picture pixels."""
        tensor, letterbox = network_input(rgb, spec.side)
        session = self.sessions.session(self.models[spec])
        try:
            regressors, classificators = session.run(None, {session.get_inputs()[0].name: tensor})
        finally:
            tensor.fill(0)  # a small copy of the photo: zeroed as soon as the network has read it
        return [(score, to_picture(box, spec.side, letterbox)) for score, box in decode(regressors, classificators, spec)]


# A face narrower than this share of the picture's long side may have neighbours too small for
# the whole-picture pass (a group, a crowd): then the picture is searched again in tiles.
SMALL_FACE = 0.12
TILES = 3  # per side, each half the picture's width and height (so they overlap by half)


def needs_tiles(faces: list[tuple[float, np.ndarray]], width: int, height: int) -> bool:
    """Search in tiles unless the whole-picture pass found exactly one large face (a selfie)."""
    if len(faces) != 1:
        return True
    box = faces[0][1]
    return (box[2] - box[0]) < SMALL_FACE * max(width, height)


def tiles(width: int, height: int, count: int = TILES) -> list[tuple[int, int, int, int]]:
    """``count`` x ``count`` windows (x0, y0, x1, y1), each 2/(count+1) of the picture's side,
    a half window apart: a face less than half a window wide lies wholly inside one of them."""
    tile_w, tile_h = (2 * width) // (count + 1), (2 * height) // (count + 1)
    xs = [i * (width - tile_w) // (count - 1) for i in range(count)]
    ys = [i * (height - tile_h) // (count - 1) for i in range(count)]
    return [(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]


def to_picture(box: np.ndarray, side: int, letterbox: Letterbox) -> np.ndarray:
    """A box in 0..1 of the network input -> picture pixels."""
    return np.array([
        (box[0] * side - letterbox.pad_x) / letterbox.scale,
        (box[1] * side - letterbox.pad_y) / letterbox.scale,
        (box[2] * side - letterbox.pad_x) / letterbox.scale,
        (box[3] * side - letterbox.pad_y) / letterbox.scale,
    ])


def faces_from(detections: list[tuple[float, np.ndarray]], width: int, height: int) -> list[Face]:
    """Boxes in picture pixels -> Faces clipped to the picture, largest first."""
    faces = []
    for score, (x0, y0, x1, y1) in detections:
        left, top = max(0, round(x0)), max(0, round(y0))
        right, bottom = min(width, round(x1)), min(height, round(y1))
        if right > left and bottom > top:
            faces.append(Face(left, top, right - left, bottom - top, round(score, 4)))
    return sorted(faces, key=lambda f: (-f.width * f.height, f.x, f.y))


# The ellipse over each face, in parts of its box: BlazeFace's box runs from the brows to the chin
# (the Haar box before it started at the hairline), so the ellipse sits higher and reaches further
# to take in forehead and hair. The blur around it has a sigma of MASK_BLUR of the narrowest face.
MASK_CENTRE_Y = 0.40
MASK_HALF_WIDTH = 0.65
MASK_HALF_HEIGHT = 0.85
MASK_BLUR = 0.18


def face_mask(height: int, width: int, faces: list[Face]) -> np.ndarray:
    """A float32 HxW mask: 1 over each face (an ellipse taking in hair and chin), falling
    smoothly to 0 around it so no seam shows where the style strength changes."""
    import cv2

    # Work on a small canvas: the mask is smooth, so its resolution hardly matters.
    scale = min(1.0, 256 / max(height, width))
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    mask = np.zeros((small_h, small_w), dtype=np.float32)
    for face in faces:
        cx = (face.x + face.width / 2) * scale
        cy = (face.y + face.height * MASK_CENTRE_Y) * scale
        axes = (max(1, round(face.width * MASK_HALF_WIDTH * scale)), max(1, round(face.height * MASK_HALF_HEIGHT * scale)))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, 0, 0, 360, 1.0, thickness=-1)
    if faces:
        sigma = max(1.0, MASK_BLUR * min(f.width for f in faces) * scale)
        mask = cv2.GaussianBlur(mask, (0, 0), sigma).astype(np.float32, copy=False)
        np.minimum(mask, 1.0, out=mask)
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
