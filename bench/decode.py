"""What bounded decoding and wiped memory cost, on a normal 1280x960 photo.

    python bench/decode.py

In a process with every model loaded (what `darkroom run` forks), interleaved A/B rounds:
* decode in the CPU-limited child (`decode`) against decoding in this process (`decode_here`);
* the whole styling (decode, faces, network, JPEG) with glibc wiping freed blocks (bot/safeguards/heap.py)
  and without;
* the garbage collection that ends each job (`forget_freed_copies`);
* the hostile corpus's scan bomb: CPU to decode it unbounded, and time to refuse it.
Prints medians and ratios; the numbers are noisy on a shared machine, the ratios less so.
"""

from __future__ import annotations

import ctypes
import gc
import io
import statistics
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.hostile.corpus

from PIL import Image  # noqa: E402

from bot.safeguards.heap import FREED, M_PERTURB  # noqa: E402
from inference import Engine, EngineConfig, StyleRequest  # noqa: E402
from inference.imageio import decode, decode_here  # noqa: E402


def photo() -> bytes:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = Image.open(path).convert("RGB").resize((1280, 960), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    engine = Engine(EngineConfig())
    engine.verify()
    data = photo()
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    rss = int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]) // 1024
    print(f"process RSS with every model loaded: {rss} MB; photo {len(data) // 1024} KB, 1280x960")

    child, here = [], []
    for _ in range(30):
        child.append(timed(decode, data))
        here.append(timed(decode_here, data))
    c, h = statistics.median(child), statistics.median(here)
    print(f"decode 1280x960 JPEG: child {c * 1000:.1f} ms, in process {h * 1000:.1f} ms, overhead {(c - h) * 1000:.1f} ms ({c / h:.2f}x)")

    request = StyleRequest("oil")
    wiped, plain = [], []
    for _ in range(6):
        mallopt(M_PERTURB, FREED)
        wiped.append(timed(engine.stylize, data, request))
        mallopt(M_PERTURB, 0)
        plain.append(timed(engine.stylize, data, request))
    w, p = statistics.median(wiped), statistics.median(plain)
    print(f"stylize 'oil' 1280x960: freed memory wiped {w:.3f} s, not wiped {p:.3f} s ({w / p:.3f}x)")

    collections = [timed(gc.collect) for _ in range(10)]
    print(f"gc.collect() at the end of a job: {statistics.median(collections) * 1000:.1f} ms")

    from inference.errors import TooComplex
    from tests.hostile.corpus import scan_bomb

    bomb = scan_bomb()
    cpu = time.process_time()
    decode_here(bomb)
    cpu = time.process_time() - cpu
    started = time.perf_counter()
    try:
        decode(bomb)
    except TooComplex:
        pass
    refused = time.perf_counter() - started
    scans = bomb.count(b"\xff\xda")
    print(f"scan bomb ({len(bomb) // 1024} KB, {scans} scans): {cpu:.2f} s CPU unbounded, refused in {refused * 1000:.2f} ms")


if __name__ == "__main__":
    main()
