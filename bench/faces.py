"""Face detection and face fidelity.

    python bench/faces.py              # both parts
    python bench/faces.py detection    # recall and false detections, time per photo
    python bench/faces.py fidelity     # face fidelity of every style

Detection: the face test set (tests/face_set.py: public-domain pictures from installed wheels and
variations of them) through BlazeFace (the engine's detector) and, when OpenCV with its Haar
cascades happens to be installed (`pip install 'opencv-python-headless<5'`), through the Haar
cascades Darkroom used before (frontal at 480 px, profile at 320 px both ways), side by side per
variation; then the detector's time per 1280x960 photo (CPU time of this process, one thread).

Does the result still look like the person? Face fidelity of every style, with and without
face awareness, on the public-domain test portraits.

For each style and portrait it reports whether the face detector still finds the face in the
output (face awareness on / off) and the structural similarity (SSIM, on luminance) of the face
region of the output with the face region of the original, with and without face awareness.
Needs scikit-image (installed by the `test` extra) for SSIM and the portraits.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))  # the face test set lives in tests/face_set.py

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


def haar_detector():
    """The Haar cascades Darkroom used until BlazeFace replaced them, or None without them."""
    try:
        import cv2

        frontal = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml"))
        profile = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_profileface.xml"))
    except (ImportError, AttributeError):
        return None
    if frontal.empty() or profile.empty():
        return None

    def scaled(grey, side):
        scale = min(1.0, side / max(grey.shape))
        if scale < 1.0:
            grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(grey), scale

    def run(cascade, grey, neighbours, factor):
        size = max(20, round(min(grey.shape) * 0.06))
        found = cascade.detectMultiScale(grey, scaleFactor=factor, minNeighbors=neighbours, minSize=(size, size))
        return [tuple(int(v) for v in b) for b in (found if len(found) else [])]

    def detect(rgb):
        full = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        grey, scale = scaled(full, 480)
        boxes = [(x / scale, y / scale, w / scale, h / scale) for x, y, w, h in run(frontal, grey, 5, 1.1)]
        small, s2 = scaled(full, 320)
        boxes += [(x / s2, y / s2, w / s2, h / s2) for x, y, w, h in run(profile, small, 6, 1.2)]
        flipped = cv2.flip(small, 1)
        boxes += [((small.shape[1] - x - w) / s2, y / s2, w / s2, h / s2) for x, y, w, h in run(profile, flipped, 6, 1.2)]
        kept = []
        for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
            if all(_overlap_xywh(box, other) < 0.3 for other in kept):
                kept.append(box)
        return [(x, y, x + w, y + h) for x, y, w, h in kept]

    return detect


def _overlap_xywh(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3]) if ix * iy else 0.0


def detection() -> None:
    import time

    from inference.catalogue import load_catalogue
    from inference.faces import FaceDetector
    from inference.models import SessionPool
    from tests.face_set import build, score

    catalogue = load_catalogue()
    blazeface = FaceDetector(catalogue.model("face_short_range"), catalogue.model("face_full_range"), SessionPool(1))
    blazeface.warm_up()
    detectors = {"BlazeFace": lambda rgb: [(f.x, f.y, f.x + f.width, f.y + f.height) for f in blazeface.detect(rgb)]}
    haar = haar_detector()
    if haar is None:
        print("OpenCV's Haar cascades are not installed here: BlazeFace only (pip install 'opencv-python-headless<5' to compare)")
    else:
        detectors["Haar"] = haar
    samples = build()
    table: dict[str, dict[str, list[int]]] = {}
    misses: dict[str, list[str]] = {name: [] for name in detectors}
    for sample in samples:
        row = table.setdefault(sample.variation, {})
        for name, detect in detectors.items():
            found, false = score(detect(sample.rgb), sample.faces)
            totals = row.setdefault(name, [0, 0, 0, 0])  # found, faces, false, pictures
            totals[0] += found
            totals[1] += len(sample.faces)
            totals[2] += false
            totals[3] += 1
            if found < len(sample.faces) or false:
                misses[name].append(f"{sample.variation} / {sample.name}: {found}/{len(sample.faces)} found, {false} false")
    names = list(detectors)
    header = f"{'variation':<12} {'pictures':>8} {'faces':>5}" + "".join(f"  {n + ' recall':>17} {'false':>5}" for n in names)
    print(header)
    overall = {n: [0, 0, 0] for n in names}
    for variation, row in table.items():
        first = row[names[0]]
        line = f"{variation:<12} {first[3]:>8} {first[1]:>5}"
        for n in names:
            found, faces, false, _ = row[n]
            overall[n][0] += found
            overall[n][1] += faces
            overall[n][2] += false
            recall = f"{found}/{faces} {100 * found / faces:.0f}%" if faces else "-"
            line += f"  {recall:>17} {false:>5}"
        print(line)
    line = f"{'all':<12} {len(samples):>8} {overall[names[0]][1]:>5}"
    for n in names:
        found, faces, false = overall[n]
        line += f"  {f'{found}/{faces} {100 * found / faces:.1f}%':>17} {false:>5}"
    print(line)
    for name, lines in misses.items():
        if lines:
            print(f"\n{name} missed or added:")
            for text in lines:
                print(f"  {text}")

    # time per photo at 1280x960, CPU time of this process (the machine is shared: wall time is noisy)
    from PIL import Image

    from tests.face_set import source

    photos = [np.asarray(Image.fromarray(source(n)).resize((1280, 960), Image.Resampling.LANCZOS)) for n in ("astronaut", "grace")]
    print("\ntime per 1280x960 photo, one thread (CPU ms, median of 5 rounds of 10, detectors interleaved):")
    rounds: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(5):
        for n in names:
            started = time.process_time()
            for _ in range(5):
                for photo in photos:
                    detectors[n](photo)
            rounds[n].append((time.process_time() - started) / 10 * 1000)
    for n in names:
        print(f"  {n}: {sorted(rounds[n])[2]:.1f} ms")


def fidelity() -> int:
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


def main() -> int:
    parts = sys.argv[1:] or ["detection", "fidelity"]
    if "detection" in parts:
        detection()
    if "fidelity" in parts:
        return fidelity()
    return 0


if __name__ == "__main__":
    sys.exit(main())
