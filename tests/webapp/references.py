"""Reference data written by Python (OpenCV, the engine) for the page's JS tests (tests/webapp/js).

`write_references(directory)` writes raw arrays and a refs.json describing them; the JS tests
read DARKROOM_WEBAPP_REFS. Everything comes from the test portraits inside installed wheels.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from inference import Engine
from inference.catalogue import load_catalogue
from inference.engine import blend, keep_colours
from inference.faces import DETECT_SIDE, PROFILE_SIDE, _scaled
from inference.imageio import SOURCE_NEURAL, AILabel
from inference.networks import MultiStyleNetwork
from tests.conftest import portrait_path

NETWORK_SIZE = (512, 384)  # width, height of the network reference


def _raw(directory: Path, name: str, array: np.ndarray) -> dict:
    (directory / name).write_bytes(np.ascontiguousarray(array).tobytes())
    return {"file": name, "shape": list(array.shape), "dtype": str(array.dtype)}


def write_references(directory: Path, engine: Engine) -> Path:
    import cv2
    import onnxruntime as ort

    from bot.web.page import served_model

    directory.mkdir(parents=True, exist_ok=True)
    catalogue = engine.catalogue
    (directory / "served.onnx").write_bytes(served_model(catalogue, "multistyle26-phase.onnx"))
    frontal_model, profile_model = catalogue.model("face_frontal"), catalogue.model("face_profile")
    frontal = cv2.CascadeClassifier(str(frontal_model.path))
    profile = cv2.CascadeClassifier(str(profile_model.path))
    refs: dict = {
        "cascades": {"frontal": str(frontal_model.path), "profile": str(profile_model.path)},
        "shipped_model": str(catalogue.model("multistyle26").path),
        "shipped_sha256": catalogue.model("multistyle26").sha256,
        "served_model": "served.onnx",
        "portraits": {},
    }
    for name in ("grace", "astronaut"):
        rgb = np.asarray(Image.open(portrait_path(name)).convert("RGB"))
        height, width = rgb.shape[:2]
        full = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        entry = {"rgb": _raw(directory, f"{name}_rgb.bin", rgb), "width": width, "height": height,
                 "grey": _raw(directory, f"{name}_grey.bin", full), "scaled": {}}
        for side, cascade, neighbours, factor in ((DETECT_SIDE, frontal, 5, 1.1), (PROFILE_SIDE, profile, 6, 1.2)):
            grey, scale = _scaled(full, side)
            min_face = max(20, round(min(grey.shape) * 0.06))
            raw = cascade.detectMultiScale(grey, scaleFactor=factor, minNeighbors=0, minSize=(min_face, min_face))
            grouped = cascade.detectMultiScale(grey, scaleFactor=factor, minNeighbors=neighbours, minSize=(min_face, min_face))
            h, w = grey.shape
            resized = {}
            for f in (1.1, 1.1**5, 1.1**9, 2.0000001):
                size = (round(w / f), round(h / f))
                resized[f"{size[0]}x{size[1]}"] = _raw(directory, f"{name}_{side}_lin_{size[0]}x{size[1]}.bin",
                                                         cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR_EXACT))
            entry["scaled"][str(side)] = {
                "grey": _raw(directory, f"{name}_{side}.bin", grey), "width": w, "height": h, "scale": scale,
                "min_face": min_face, "neighbours": neighbours, "factor": factor,
                "candidates": sorted([list(map(int, r)) for r in (raw if len(raw) else [])]),
                "grouped": sorted([list(map(int, r)) for r in (grouped if len(grouped) else [])]),
                "linear": resized,
            }
        entry["faces"] = [[f.x, f.y, f.width, f.height] for f in engine.faces.detect(rgb)]
        refs["portraits"][name] = entry

    # network at 512x384: the engine's output (rewritten graph) and the shipped graph's
    rgb = np.asarray(Image.open(portrait_path("grace")).convert("RGB").resize(NETWORK_SIZE, Image.Resampling.LANCZOS))
    style = catalogue.get("impressionist")
    styled = engine.multistyle.run(rgb, style.weights)
    faces = [f for f in engine.faces.detect(rgb)]
    refs["network"] = {
        "rgb": _raw(directory, "net_rgb.bin", rgb),
        "weights": [float(w) for w in style.weights],
        "styled": _raw(directory, "net_styled.bin", styled),
        "keep_colours": _raw(directory, "net_keep.bin", keep_colours(styled, rgb)),
        "faces": [[f.x, f.y, f.width, f.height] for f in faces],
        "face_strength": style.face_strength,
        "blend": _raw(directory, "net_blend.bin", blend(rgb, styled, 0.8, faces, style.face_strength)),
        "blend_plain": _raw(directory, "net_blend_plain.bin", blend(rgb, styled, 0.7, [], style.face_strength)),
    }
    label = AILabel(SOURCE_NEURAL, "Ink wash & <friends> \"quoted\"", "Darkroom 0.1.0", "Studio & <Co> 示例", "0f" * 16)
    refs["xmp"] = {"source": label.digital_source_type, "style": label.style_name, "software": label.software,
                   "provider": label.provider, "content_id": label.content_id, "packet": label.xmp().decode("utf-8")}

    # orientation: what Pillow's exif_transpose makes of a small picture for each EXIF value
    base = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2
    refs["orientation"] = {"base": _raw(directory, "orient_base.bin", base), "cases": {}}
    from PIL import ImageOps

    for value in range(1, 9):
        image = Image.fromarray(base)
        exif = image.getexif()
        exif[0x0112] = value
        out = io.BytesIO()
        image.save(out, "PNG", exif=exif)
        turned = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(out.getvalue()))).convert("RGB"))
        jpeg = io.BytesIO()
        Image.fromarray(base).save(jpeg, "JPEG", exif=exif)
        (directory / f"orient_{value}.jpg").write_bytes(jpeg.getvalue())
        refs["orientation"]["cases"][str(value)] = {"expected": _raw(directory, f"orient_{value}.bin", turned),
                                                    "jpeg": f"orient_{value}.jpg"}
    (directory / "refs.json").write_text(json.dumps(refs, indent=1))
    return directory
