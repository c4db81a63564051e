"""What Content Credentials cost per result at 1280x960: time and bytes.

    python bench/provenance.py [--runs 40]

A 1280x960 result (the test portrait, restyled by the engine with "ink" so the JPEG is a real
result's size) is encoded with its label and then signed with a fresh local identity, as
`Engine.encode` does. The two are timed interleaved in the same run (encode alone, then encode
and sign), so the machine's noise hits both alike; the cost is the median of the differences.
The bytes are the signed file's size minus the unsigned one's (the same pixels, the same label).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import serialization
from PIL import Image

from bot.storage import credentials
from inference import Engine, EngineConfig, StyleRequest
from inference.imageio import encode_jpeg
from inference.provenance import Signer, SigningIdentity, read_credentials
from tests.conftest import portrait_path

WIDTH, HEIGHT = 1280, 960


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    chain, key = credentials.make_identity("Darkroom bench")
    identity = SigningIdentity(
        chain, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    engine = Engine(EngineConfig())
    engine.verify()
    photo = Image.open(portrait_path("grace")).convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    picture = engine.load(_jpeg(photo))
    request = StyleRequest("ink")
    rgb = engine.render_rgb(picture, request)
    assert rgb.shape[:2] == (HEIGHT, WIDTH), rgb.shape
    credits = engine.credits("ink", face_aware=bool(picture.faces))
    signer = Signer(identity)

    plain_ms, signed_ms, extra = [], [], []
    for _ in range(args.runs + 2):  # the first two warm up
        started = time.perf_counter()
        label = engine.label("ink")
        plain = encode_jpeg(rgb, label, quality=engine.config.jpeg_quality)
        middle = time.perf_counter()
        signed = signer.sign(encode_jpeg(rgb, label, quality=engine.config.jpeg_quality), label, credits)
        done = time.perf_counter()
        plain_ms.append((middle - started) * 1000)
        signed_ms.append((done - middle) * 1000)
        extra.append(len(signed) - len(plain))
    plain_ms, signed_ms, extra = plain_ms[2:], signed_ms[2:], extra[2:]
    sign_only = [s - p for s, p in zip(signed_ms, plain_ms)]
    assert read_credentials(signed, identity.anchor).state == "Trusted"
    print(f"CPU: {_cpu()}")
    print(f"result: {WIDTH}x{HEIGHT}, style ink, JPEG quality {engine.config.jpeg_quality}, {len(plain)} bytes unsigned")
    print(f"encode (label, no signature): median {statistics.median(plain_ms):.1f} ms over {args.runs} runs")
    print(f"encode + sign:                median {statistics.median(signed_ms):.1f} ms")
    print(f"signing cost:                 median {statistics.median(sign_only):.1f} ms "
          f"(p90 {sorted(sign_only)[int(0.9 * len(sign_only))]:.1f} ms)")
    print(f"bytes added by the manifest:  {statistics.median(extra):.0f} bytes ({statistics.median(extra) / 1024:.2f} KiB)")
    return 0


def _cpu() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", text)
    flags = set(re.search(r"flags\s*:\s*(.+)", text).group(1).split())  # type: ignore[union-attr]
    wanted = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "sha_ni") if f in flags]
    return f"{model.group(1) if model else '?'}; {' '.join(wanted)}"


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


if __name__ == "__main__":
    sys.exit(main())
