"""Does the result still look like the person? Face fidelity of every style, with and without
face awareness, on the public-domain test portraits.

    python bench/faces.py

For each style and portrait it reports whether the face detector still finds the face in the
output (face awareness on / off) and the structural similarity (SSIM, on luminance) of the face
region of the output with the face region of the original, with and without face awareness.
Needs scikit-image (installed by the `test` extra) for SSIM and the portraits.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402


def portraits() -> dict[str, bytes]:
    import matplotlib
    import skimage

    paths = {
        "astronaut": Path(skimage.__file__).parent / "data" / "astronaut.png",
        "grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    }
    return {name: path.read_bytes() for name, path in paths.items()}


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def face_ssim(original: np.ndarray, output: np.ndarray, face) -> float:
    from skimage.metrics import structural_similarity

    box = (slice(face.y, face.y + face.height), slice(face.x, face.x + face.width))
    a, b = luminance(original[box]), luminance(output[box])
    return float(structural_similarity(a, b, data_range=255.0))


def main() -> int:
    from inference import Engine, Picture, StyleRequest

    engine = Engine()
    engine.verify()
    rows = []
    for name, data in portraits().items():
        picture = engine.load(data)
        if not picture.faces:
            print(f"{name}: no face found in the original; skipped")
            continue
        face = picture.faces[0]
        for style in engine.catalogue.styles:
            results = {}
            for aware in (True, False):
                out = engine.render_rgb(Picture(picture.rgb, picture.faces), StyleRequest(style.key, face_aware=aware))
                found = engine.faces.detect(out)
                detected = any(_overlap(face, f) > 0.3 for f in found)
                results[aware] = (detected, face_ssim(picture.rgb, out, face))
            rows.append((name, style.key, style.face_strength, results[True], results[False]))

    print(f"{'portrait':<13} {'style':<14} {'face':>5}  {'detected on/off':>15}  {'SSIM on':>7}  {'SSIM off':>8}  {'gain':>6}")
    for name, key, strength, on, off in rows:
        detected = f"{'yes' if on[0] else 'no'}/{'yes' if off[0] else 'no'}"
        print(f"{name:<13} {key:<14} {strength:>5.2f}  {detected:>15}  {on[1]:>7.3f}  {off[1]:>8.3f}  {on[1] - off[1]:>+6.3f}")
    n = len(rows)
    detected_on = sum(r[3][0] for r in rows)
    detected_off = sum(r[4][0] for r in rows)
    mean_on = sum(r[3][1] for r in rows) / n
    mean_off = sum(r[4][1] for r in rows) / n
    print(f"\nface still detected: {detected_on}/{n} with face awareness, {detected_off}/{n} without")
    print(f"mean face-region SSIM: {mean_on:.3f} with face awareness, {mean_off:.3f} without ({mean_on - mean_off:+.3f})")
    neural = [r for r in rows if r[2] < 1.0]
    if neural:
        print(
            f"neural styles only: SSIM {sum(r[3][1] for r in neural) / len(neural):.3f} with, "
            f"{sum(r[4][1] for r in neural) / len(neural):.3f} without; detected "
            f"{sum(r[3][0] for r in neural)}/{len(neural)} with, {sum(r[4][0] for r in neural)}/{len(neural)} without"
        )
    return 0


def _overlap(a, b) -> float:
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = ix * iy
    return inter / min(a.width * a.height, b.width * b.height) if inter else 0.0


if __name__ == "__main__":
    sys.exit(main())
