"""A face test set made only from public-domain pictures that ship inside installed wheels, and
variations made from them (no download, nothing stored: every picture is built in memory).

Faces: the astronaut Eileen Collins (NASA, scikit-image) and Grace Hopper (US Navy,
matplotlib). No face: Chelsea the cat, the coffee cup (both CC0, scikit-image), the Falcon 9
launch (SpaceX, public domain, scikit-image) and the Hubble deep field (NASA, scikit-image).

Each picture comes with its true face boxes; a detection finds a face when its centre lies in
the true box and its width is between half and twice the true width (`matches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in picture pixels

# The true face boxes (forehead to chin, ear to ear), drawn by hand on the originals.
SOURCES: dict[str, Box] = {
    "astronaut": (170.0, 62.0, 280.0, 180.0),
    "grace": (158.0, 118.0, 372.0, 348.0),
}
NO_FACE = ("chelsea", "coffee", "rocket", "hubble_deep_field")
FRAME = (1280, 960)  # the size photos are styled at (width, height)


@dataclass(frozen=True)
class Sample:
    variation: str
    name: str
    rgb: np.ndarray
    faces: tuple[Box, ...]


def source(name: str) -> np.ndarray:
    if name == "grace":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    else:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        path = next(p for p in (data / f"{name}.png", data / f"{name}.jpg") if p.exists())
    return np.asarray(Image.open(path).convert("RGB"))


def matches(detected: Box, truth: Box) -> bool:
    cx, cy = (detected[0] + detected[2]) / 2, (detected[1] + detected[3]) / 2
    width, true_width = detected[2] - detected[0], truth[2] - truth[0]
    return truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3] and 0.5 <= width / true_width <= 2.0


def score(detections: list[Box], truths: tuple[Box, ...]) -> tuple[int, int]:
    """(faces found, false detections): each truth is taken by at most one detection."""
    free = list(truths)
    found = false = 0
    for box in detections:
        hit = next((t for t in free if matches(box, t)), None)
        if hit is None:
            false += 1
        else:
            free.remove(hit)
            found += 1
    return found, false


# ---- variations ------------------------------------------------------------------------------

def rotated(rgb: np.ndarray, box: Box, degrees: float) -> tuple[np.ndarray, Box]:
    """Turned about the face's centre (counter-clockwise), corners filled from the edge."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    image = Image.fromarray(rgb).rotate(degrees, resample=Image.Resampling.BICUBIC, center=(cx, cy), fillcolor=(96, 96, 96))
    return np.asarray(image), box  # the centre stays; a turned face keeps about its size


def mirrored(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    width = rgb.shape[1]
    return np.ascontiguousarray(rgb[:, ::-1]), (width - box[2], box[1], width - box[0], box[3])


def sized(rgb: np.ndarray, box: Box, share: float) -> tuple[np.ndarray, Box]:
    """The face taking ``share`` of the frame's width, on a plain grey 1280x960 frame (5%) up to
    a crop where the face spans the whole width (100%)."""
    frame_w, frame_h = FRAME
    face_w = box[2] - box[0]
    scale = share * frame_w / face_w
    image = Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.Resampling.LANCZOS)
    cx, cy = (box[0] + box[2]) / 2 * scale, (box[1] + box[3]) / 2 * scale
    canvas = Image.new("RGB", FRAME, (128, 128, 128))
    left, top = round(frame_w / 2 - cx), round(frame_h / 2 - cy)
    canvas.paste(image, (left, top))
    return np.asarray(canvas), tuple(v * scale + (left if i % 2 == 0 else top) for i, v in enumerate(box))


def dark(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    """Under-exposed by about three stops, with sensor-like noise."""
    out = (rgb.astype(np.float32) / 255.0) ** 2.2 * 0.18 * 255.0
    out += np.random.default_rng(7).normal(0, 2.0, out.shape)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), box


def back_lit(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    """A bright window behind: the person darkened, the rest washed out towards white."""
    height, width = rgb.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    reach = max(box[2] - box[0], box[3] - box[1])
    glare = np.clip((np.hypot(xx - cx, yy - cy) / reach - 0.6) / 0.8, 0, 1)[..., None] * 0.85
    out = rgb.astype(np.float32) * 0.4 * (1 - glare) + 255.0 * glare
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), box


def sunglasses(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    """Two dark lenses and a bridge over the eyes."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    eye_y = y0 + 0.40 * h
    for centre in (x0 + 0.32 * w, x0 + 0.68 * w):
        draw.ellipse((centre - 0.17 * w, eye_y - 0.10 * h, centre + 0.17 * w, eye_y + 0.10 * h), fill=(12, 12, 16))
    draw.line((x0 + 0.45 * w, eye_y - 0.03 * h, x0 + 0.55 * w, eye_y - 0.03 * h), fill=(12, 12, 16), width=max(2, round(w / 40)))
    return np.asarray(image), box


def grid(pictures: list[tuple[np.ndarray, Box]], columns: int, rows: int) -> tuple[np.ndarray, tuple[Box, ...]]:
    """Pictures side by side in a 1280x960 frame, each fitted into its cell."""
    frame_w, frame_h = FRAME
    cell_w, cell_h = frame_w // columns, frame_h // rows
    canvas = Image.new("RGB", FRAME, (40, 40, 40))
    boxes = []
    for index, (rgb, box) in enumerate(pictures[: columns * rows]):
        scale = min(cell_w / rgb.shape[1], cell_h / rgb.shape[0])
        image = Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.Resampling.LANCZOS)
        left = (index % columns) * cell_w + (cell_w - image.width) // 2
        top = (index // columns) * cell_h + (cell_h - image.height) // 2
        canvas.paste(image, (left, top))
        boxes.append((box[0] * scale + left, box[1] * scale + top, box[2] * scale + left, box[3] * scale + top))
    return np.asarray(canvas), tuple(boxes)


def build() -> list[Sample]:
    samples: list[Sample] = []
    originals = {name: (source(name), box) for name, box in SOURCES.items()}
    for name, (rgb, box) in originals.items():
        samples.append(Sample("original", name, rgb, (box,)))
        for degrees in (-30, -20, -10, 10, 20, 30):
            samples.append(Sample("rotated", f"{name} {degrees:+d} deg", *_one(rotated(rgb, box, degrees))))
        for share in (0.05, 0.1, 0.2, 0.4, 0.7, 1.0):
            samples.append(Sample("size", f"{name} {share:.0%} of width", *_one(sized(rgb, box, share))))
        samples.append(Sample("mirrored", name, *_one(mirrored(rgb, box))))
        samples.append(Sample("dark", name, *_one(dark(rgb, box))))
        samples.append(Sample("back-lit", name, *_one(back_lit(rgb, box))))
        samples.append(Sample("sunglasses", name, *_one(sunglasses(rgb, box))))
        samples.append(Sample("sunglasses", f"{name} mirrored", *_one(sunglasses(*mirrored(rgb, box)))))
    a, g = originals["astronaut"], originals["grace"]
    mix = [a, g, mirrored(*g), mirrored(*a), a, mirrored(*g), g, mirrored(*a), a]
    samples.append(Sample("grid 2x2", "astronaut, grace", *grid(mix, 2, 2)))
    samples.append(Sample("grid 2x2", "dark and mirrored", *grid([dark(*p) for p in mix[3:]], 2, 2)))
    samples.append(Sample("grid 3x3", "astronaut, grace", *grid(mix, 3, 3)))
    samples.append(Sample("grid 3x3", "sunglasses", *grid([sunglasses(*p) for p in mix], 3, 3)))
    for name in NO_FACE:
        samples.append(Sample("no face", name, source(name), ()))
    return samples


def _one(pair: tuple[np.ndarray, Box]) -> tuple[np.ndarray, tuple[Box, ...]]:
    return pair[0], (pair[1],)
