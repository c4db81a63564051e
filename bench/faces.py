"""Face detection and face fidelity.

    python bench/faces.py              # both parts
    python bench/faces.py detection    # recall and false detections, time per photo
    python bench/faces.py fidelity     # face fidelity of every style
    python bench/faces.py page         # the page's face detection in Chromium, 1280x960

Detection: the face test set (tests/face_set.py: public-domain pictures from installed wheels and
variations of them) through BlazeFace (the engine's detector) and, when OpenCV with its Haar
cascades happens to be installed (`pip install 'opencv-python-headless<5'`), through the Haar
cascades Darkroom used before (frontal at 480 px, profile at 320 px both ways), side by side per
variation; then the detector's time per 1280x960 photo (CPU time of this process, one thread).

Does the result still look like the person? Face fidelity of every style, with and without
face awareness, on the public-domain test portraits: SSIM over the true face box drawn by hand
(tests/face_set.py), so detectors with different boxes are compared on the same pixels.

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

    selfies = [np.asarray(Image.fromarray(source(n)).resize((1280, 960), Image.Resampling.LANCZOS)) for n in ("astronaut", "grace")]
    groups = [s.rgb for s in samples if s.variation == "grid 3x3"]  # 1280x960; searched in tiles
    print("\ntime per 1280x960 photo, one thread (CPU ms of this process, median of 5 rounds, detectors interleaved):")
    for label, photos in (("selfie", selfies), ("group 3x3", groups)):
        rounds: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(5):
            for n in names:
                started = time.process_time()
                for _ in range(4):
                    for photo in photos:
                        detectors[n](photo)
                rounds[n].append((time.process_time() - started) / (4 * len(photos)) * 1000)
        print("  " + label + ": " + ", ".join(f"{n} {sorted(rounds[n])[2]:.1f} ms" for n in names))


PAGE_TIMING = """
async ([threads, photos, rounds]) => {
  const ort = await import("./vendor/ort.wasm.min.mjs");
  const B = await import("./blazeface.js");
  const C = await import("./core.js");
  ort.env.wasm.wasmPaths = new URL("vendor/", location.href).href;
  ort.env.wasm.numThreads = threads;
  const catalogue = await (await fetch("styles.json")).json();
  const sessions = new Map();
  for (const [spec, name] of [[B.SHORT_RANGE, "face_short_range.onnx"], [B.FULL_RANGE, "face_full_range.onnx"]]) {
    const bytes = C.unpackModel(new Uint8Array(await (await fetch(catalogue.models[name].url)).arrayBuffer()));  // sent packed
    sessions.set(spec, await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" }));
  }
  const run = async (spec, input) => {
    const s = sessions.get(spec);
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor("float32", input.data, input.dims) });
    return { regressors: out[s.outputNames[0]].data, classificators: out[s.outputNames[1]].data };
  };
  const results = {};
  for (const [name, b64] of Object.entries(photos)) {
    const blob = new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: "image/jpeg" });  // CSP: no data: fetch
    const bitmap = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const g = canvas.getContext("2d", { willReadFrequently: true });
    g.drawImage(bitmap, 0, 0);
    const rgba = g.getImageData(0, 0, bitmap.width, bitmap.height).data;
    await B.detectFaces(rgba, bitmap.width, bitmap.height, run);  // warm
    const times = [];
    let faces = [];
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      faces = await B.detectFaces(rgba, bitmap.width, bitmap.height, run);
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    results[name] = { median: times[Math.floor(times.length / 2)], min: times[0], faces: faces.length };
  }
  return results;
}
"""


def page(rounds: int = 9) -> None:
    """The page's own detectFaces (blazeface.js + the vendored onnxruntime-web, served by a real
    `darkroom run`) in headless Chromium on 1280x960 photos: a selfie and a 3x3 group."""
    import base64
    import io
    import shutil
    import subprocess
    import tempfile

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from bench.webapp import ARGS, CHROMIUM, start_darkroom
    from tests.face_set import build, source

    photos = {}
    selfie = Image.fromarray(source("grace")).resize((1280, 960), Image.Resampling.LANCZOS)
    group = Image.fromarray(next(s.rgb for s in build() if s.variation == "grid 3x3"))
    for name, image in (("selfie", selfie), ("group 3x3", group)):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=92)
        photos[name] = base64.b64encode(out.getvalue()).decode()
    work = Path(tempfile.mkdtemp(prefix="darkroom-faces-"))
    process, url = start_darkroom(work)
    try:
        with sync_playwright() as playwright:
            version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
            print(f"\nthe page's face detection at 1280x960 in {version} (median of {rounds}, warm):")
            for threads in (1, 2):
                context = playwright.chromium.launch_persistent_context(str(work / f"profile{threads}"), executable_path=CHROMIUM, args=ARGS)
                tab = context.new_page()
                tab.goto(url)
                tab.wait_for_selector("body[data-state=ready]", timeout=120_000)
                for name, r in tab.evaluate(PAGE_TIMING, [threads, photos, rounds]).items():
                    print(f"  {threads} thread(s), {name}: {r['median']:.0f} ms (min {r['min']:.0f}), {r['faces']} face(s)")
                context.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


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
        # SSIM over the true face box (tests/face_set.py), the same whichever detector drew the mask
        from inference.faces import Face
        from tests.face_set import SOURCES

        x0, y0, x1, y1 = (round(v) for v in SOURCES["grace" if name == "grace_hopper" else name])
        face = Face(x0, y0, x1 - x0, y1 - y0)
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
    parts = sys.argv[1:] or ["detection", "page", "fidelity"]
    if "detection" in parts:
        detection()
    if "page" in parts:
        page()
    if "fidelity" in parts:
        return fidelity()
    return 0


if __name__ == "__main__":
    sys.exit(main())
