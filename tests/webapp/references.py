"""Reference data written by Python (the engine, its face detector) for the page's JS tests (tests/webapp/js).

`write_references(directory)` writes raw arrays and a refs.json describing them; the JS tests
read DARKROOM_WEBAPP_REFS. Everything comes from the test portraits inside installed wheels.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from inference import Engine
from inference.engine import blend, keep_colours
from inference.faces import FULL_RANGE, SHORT_RANGE, decode, network_input, tiles
from inference.imageio import SOURCE_NEURAL, AILabel
from tests.conftest import portrait_path

NETWORK_SIZE = (512, 384)  # width, height of the network reference


def _raw(directory: Path, name: str, array: np.ndarray) -> dict:
    (directory / name).write_bytes(np.ascontiguousarray(array).tobytes())
    return {"file": name, "shape": list(array.shape), "dtype": str(array.dtype)}


def write_references(directory: Path, engine: Engine) -> Path:
    from bot.web.packing import FLOAT16, MAGIC
    from bot.web.page import MODELS, page_graph, served_model
    from tests.face_set import build

    directory.mkdir(parents=True, exist_ok=True)
    catalogue = engine.catalogue
    (directory / "served.onnx").write_bytes(page_graph(catalogue, "multistyle26-phase.onnx"))
    # the models as sent (packed), and the SHA-256 of the ONNX files they must unpack to
    packed = {}
    for index, name in enumerate(MODELS):
        (directory / f"packed{index}.bin").write_bytes(served_model(catalogue, name))
        packed[name] = {"file": f"packed{index}.bin", "graph_sha256": hashlib.sha256(page_graph(catalogue, name)).hexdigest()}
    # every float16 but the NaNs, packed, and the float32 NumPy makes of each
    halves = np.arange(65536, dtype=np.uint16).view(np.float16)
    halves = halves[~np.isnan(halves)]
    (directory / "halves.bin").write_bytes(
        MAGIC + struct.pack("<IIIII", 4 * halves.size, 1, FLOAT16, halves.size, 0) + halves.astype("<f2").tobytes()
    )
    (directory / "halves_f32.bin").write_bytes(halves.astype("<f4").tobytes())
    refs: dict = {
        "face_models": {spec.model_key: str(catalogue.model(spec.model_key).path) for spec in (SHORT_RANGE, FULL_RANGE)},
        "shipped_model": str(catalogue.model("multistyle26").path),
        "shipped_sha256": catalogue.model("multistyle26").sha256,
        "served_model": "served.onnx",
        "packed_models": packed,
        "halves": {"packed": "halves.bin", "float32": "halves_f32.bin"},
        "portraits": {},
    }
    # the portraits, and from the face test set a group (tiles), a small face and a turned one
    pictures = {name: np.asarray(Image.open(portrait_path(name)).convert("RGB")) for name in ("grace", "astronaut")}
    wanted = {("grid 3x3", "astronaut, grace"), ("size", "grace 5% of width"), ("rotated", "astronaut +30 deg")}
    for sample in build():
        if (sample.variation, sample.name) in wanted:
            pictures[f"{sample.variation}: {sample.name}"] = sample.rgb
    for index, (name, rgb) in enumerate(pictures.items()):
        height, width = rgb.shape[:2]
        entry = {"rgb": _raw(directory, f"face{index}_rgb.bin", rgb), "width": width, "height": height, "passes": []}
        # the whole picture through both networks, and the first and last tiles through full range
        windows = [(SHORT_RANGE, (0, 0, width, height)), (FULL_RANGE, (0, 0, width, height))]
        windows += [(FULL_RANGE, w) for w in (tiles(width, height)[0], tiles(width, height)[-1])]
        for number, (spec, (x0, y0, x1, y1)) in enumerate(windows):
            tensor, box = network_input(rgb[y0:y1, x0:x1], spec.side)
            session = engine.sessions.session(catalogue.model(spec.model_key))
            regressors, classificators = session.run(None, {session.get_inputs()[0].name: tensor})
            entry["passes"].append({
                "model": spec.model_key, "window": [x0, y0, x1, y1],
                "letterbox": [box.scale, box.pad_x, box.pad_y],
                "input": _raw(directory, f"face{index}_{number}_in.bin", tensor),
                "regressors": _raw(directory, f"face{index}_{number}_reg.bin", regressors),
                "classificators": _raw(directory, f"face{index}_{number}_cls.bin", classificators),
                "decoded": [[score, [float(v) for v in b]] for score, b in decode(regressors, classificators, spec)],
            })
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
        "blend": _raw(directory, "net_blend.bin", blend(rgb, styled.copy(), 0.8, faces, style.face_strength)),
        "blend_plain": _raw(directory, "net_blend_plain.bin", blend(rgb, styled.copy(), 0.7, [], style.face_strength)),  # blend works in place
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
