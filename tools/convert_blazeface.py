"""Reproduce the committed BlazeFace ONNX files from the pinned npm package.

    python tools/convert_blazeface.py            # write inference/blazeface/*.onnx, check the pins
    python tools/convert_blazeface.py --check    # convert into a temporary directory and compare

Steps: `npm pack @mediapipe/face_detection@<version>`; check each .tflite against its pinned
SHA-256 (`source_sha256` in inference/catalogue.toml); convert with tflite2onnx (PyPI, no
TensorFlow); write the graph in a canonical order; check the result against the catalogue's
`sha256` (the one the engine verifies at start-up). Needs npm and the `test` extra (tflite2onnx).

tflite2onnx lists initializers and value_info in an order that changes from run to run (set
iteration); nothing else differs, so both are sorted by name before the graph is written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "inference" / "catalogue.toml"
MODELS = ("face_short_range", "face_full_range")


def pins() -> dict[str, dict]:
    """The catalogue's entries for the converted models: npm package, member, both SHA-256s."""
    models = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))["models"]
    return {key: models[key] for key in MODELS}


def fetch_sources(workdir: Path) -> dict[str, bytes]:
    """The .tflite files from the npm tarball, each checked against its pin."""
    found: dict[str, bytes] = {}
    tarballs: dict[str, Path] = {}
    for key, pin in pins().items():
        spec = pin["npm"]
        if spec not in tarballs:
            out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True, capture_output=True, text=True)
            tarballs[spec] = workdir / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tarballs[spec]) as tar:
            data = tar.extractfile(pin["npm_file"]).read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != pin["source_sha256"]:
            raise SystemExit(f"{spec} {pin['npm_file']} has SHA-256 {digest}, pinned {pin['source_sha256']}")
        found[key] = data
    return found


def convert(tflite: bytes, workdir: Path, name: str) -> bytes:
    """tflite2onnx's graph, with its unordered lists sorted: the same bytes on every run."""
    import onnx
    from tflite2onnx import convert as tflite_to_onnx

    source, target = workdir / f"{name}.tflite", workdir / f"{name}.onnx"
    source.write_bytes(tflite)
    with redirect_stdout(io.StringIO()):  # it prints a warning per float16 tensor
        tflite_to_onnx(str(source), str(target))
    model = onnx.load(str(target))
    for field in ("initializer", "value_info"):
        items = sorted(getattr(model.graph, field), key=lambda item: item.name)
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(items)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def build(workdir: Path) -> dict[str, bytes]:
    """Every converted model, keyed as in the catalogue."""
    return {key: convert(data, workdir, key) for key, data in fetch_sources(workdir).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args()
    import logging

    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for key, data in build(Path(tmp)).items():
            pin = pins()[key]
            digest = hashlib.sha256(data).hexdigest()
            target = ROOT / "inference" / pin["file"]
            status = "matches its pin" if digest == pin["sha256"] else f"does NOT match its pin {pin['sha256']}"
            failures += digest != pin["sha256"]
            if not args.check:
                target.write_bytes(data)
            print(f"{key}: {len(data)} bytes, SHA-256 {digest} {status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
