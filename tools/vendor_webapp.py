"""Fetch the on-device page's runtime files with `npm pack` into a temporary directory, compress
them (brotli and gzip) into bot/web/static/vendor/, and write their SHA-256 pins.

Run by a maintainer when a pinned version changes, never by an operator (the compressed files are
committed). Needs npm and the `brotli` command.

    python tools/vendor_webapp.py
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {
    "onnxruntime-web@1.30.0": [
        "package/dist/ort.wasm.min.mjs",
        "package/dist/ort-wasm-simd-threaded.mjs",
        "package/dist/ort-wasm-simd-threaded.wasm",
    ],
    "@twa-dev/sdk@8.0.2": ["package/dist/telegram-web-apps.js"],
}
TARGET = Path(__file__).resolve().parent.parent / "bot" / "web" / "static" / "vendor"


def main() -> int:
    TARGET.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Vendored runtime files of the on-device page, written by tools/vendor_webapp.py.",
        "# sha256: the file as published on npm; br/gz: the committed compressed copies.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for spec, members in PACKAGES.items():
            out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True, text=True)
            tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                for member in members:
                    data = tar.extractfile(member).read()
                    name = Path(member).name
                    raw = Path(tmp) / name
                    raw.write_bytes(data)
                    subprocess.run(["brotli", "-q", "11", "-f", "-o", str(TARGET / f"{name}.br"), str(raw)], check=True)
                    (TARGET / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
                    lines += [
                        f'["{name}"]',
                        f'package = "{spec}"',
                        f'sha256 = "{hashlib.sha256(data).hexdigest()}"',
                        f'br = "{hashlib.sha256((TARGET / f"{name}.br").read_bytes()).hexdigest()}"',
                        f'gz = "{hashlib.sha256((TARGET / f"{name}.gz").read_bytes()).hexdigest()}"',
                        f"size = {len(data)}",
                        "",
                    ]
    (TARGET / "pins.toml").write_text("\n".join(lines))
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
