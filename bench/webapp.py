"""The on-device page in headless Chromium against a real `darkroom run` (no platform):
styling time at 512x384 and 1280x960 with 1 and 2 threads, first-load bytes and time to the first
result with a cold cache, and the renderer's peak memory (page + workers + WASM heap).

    python bench/webapp.py [--repeats 3]

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`). Chromium only
may or may not advertise brotli on http://127.0.0.1 (this one does); the encodings actually used
are printed, and the figure for a client without brotli is computed from the committed .gz sizes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import portrait_path  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VENDOR = ROOT / "bot" / "web" / "static" / "vendor"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_darkroom(work: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(DARKROOM_HTTP_PORT=str(free_port()), DARKROOM_DATA_DIR=str(work / "data"), PYTHONUNBUFFERED="1")
    darkroom = shutil.which("darkroom", path=str(Path(sys.executable).parent)) or "darkroom"
    process = subprocess.Popen([darkroom, "run"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    match = re.match(r"Darkroom on-device page: (\S+)", process.stdout.readline())
    if not match:
        process.kill()
        raise SystemExit("darkroom run did not start")
    return process, match.group(1)


def test_pictures(work: Path) -> dict[str, Path]:
    rgb = Image.open(portrait_path("grace")).convert("RGB")
    out = {}
    for w, h in ((512, 384), (1280, 960)):
        path = work / f"photo_{w}x{h}.jpg"
        rgb.resize((w, h), Image.Resampling.LANCZOS).save(path, quality=92)
        out[f"{w}x{h}"] = path
    return out


def renderer_peak_mb(profile: Path) -> float:
    """Largest VmHWM among this browser's renderer processes (their peak resident memory)."""
    peak = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"--type=renderer" not in cmd or str(profile).encode() not in cmd:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def style_once(page, photo: Path) -> tuple[float, float]:
    page.set_input_files("#photo", str(photo))
    page.click("#go")
    page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=300_000)
    data = page.evaluate("({...document.body.dataset})")
    if data["state"] != "done":
        raise SystemExit(f"styling failed: {page.text_content('#error')}")
    # run it again from a clean state next time
    page.evaluate("document.body.dataset.state = 'ready'")
    return float(data["networkSeconds"]), float(data["seconds"])


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
    process, url = start_darkroom(work)
    photos = test_pictures(work)
    gz_sizes = {p.name[:-3]: p.stat().st_size for p in VENDOR.glob("*.gz")}
    results: dict = {}
    try:
        with sync_playwright() as playwright:
            for threads in (1, 2, 1, 2)[: 2 if args.repeats == 1 else 4]:
                profile = Path(tempfile.mkdtemp(prefix="profile-", dir=work))
                context = playwright.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS)
                page = context.new_page()
                transferred, transferred_gz, encodings = [], [], set()

                def finished(request):
                    sizes = request.sizes()
                    body = max(0, sizes["responseBodySize"])  # negative: served from the memory cache
                    transferred.append(body + sizes["responseHeadersSize"])
                    name = request.url.split("?")[0].rsplit("/", 1)[-1]
                    response = request.response()
                    encoding = response.headers.get("content-encoding", "identity") if response else "?"
                    encodings.add(encoding)
                    gz = gz_sizes.get(name, body) if encoding == "br" and body else body
                    transferred_gz.append(gz + sizes["responseHeadersSize"])

                page.on("requestfinished", finished)
                started = time.perf_counter()
                page.goto(f"{url}?threads={threads}")
                page.wait_for_selector("body[data-state=ready]", timeout=120_000)
                network, total = style_once(page, photos["512x384"])
                first_result = time.perf_counter() - started
                entry = results.setdefault(threads, {"512x384": [], "1280x960": [], "first": [], "bytes": [], "bytes_gz": [], "peak": [], "js": []})
                entry["first"].append(first_result)
                entry["bytes"].append(sum(transferred))
                entry["bytes_gz"].append(sum(transferred_gz))
                entry["encodings"] = sorted(encodings)
                for _ in range(args.repeats):  # interleaved sizes, warm
                    for size in ("512x384", "1280x960"):
                        entry[size].append(style_once(page, photos[size]))
                entry["peak"].append(renderer_peak_mb(profile))
                try:  # JS heaps and WASM memories of the page and its workers (crossOriginIsolated only)
                    entry["js"].append(page.evaluate("performance.measureUserAgentSpecificMemory().then(m => m.bytes)") / 1e6)
                except Exception:
                    pass
                entry["isolated"] = page.evaluate("crossOriginIsolated")
                entry["threads_used"] = page.evaluate("document.body.dataset.threads")
                context.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)

    print(f"Chromium {subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True).stdout.strip()}, "
          f"{os.cpu_count()} CPUs (shared: figures are noisy; medians of {args.repeats} warm runs per browser launch)")
    for threads, e in sorted(results.items()):
        print(f"\nthreads={threads} (used {e['threads_used']}, crossOriginIsolated={e['isolated']})")
        for size in ("512x384", "1280x960"):
            net = [n for n, _ in e[size]]
            tot = [t for _, t in e[size]]
            print(f"  {size:>9}: network {statistics.median(net):.2f} s (min {min(net):.2f}, max {max(net):.2f}); "
                  f"whole styling incl. decode, faces, blend, JPEG {statistics.median(tot):.2f} s")
        print(f"  first load, cold cache: {statistics.median(e['bytes']) / 1e6:.2f} MB transferred "
              f"(encodings {', '.join(e['encodings'])}); {statistics.median(e['bytes_gz']) / 1e6:.2f} MB for a client without brotli; "
              f"time to first result (512x384) {statistics.median(e['first']):.2f} s")
        print(f"  renderer process peak resident memory (page + workers + WASM heap + Chromium, VmHWM): {max(e['peak']):.0f} MB")
        if e["js"]:
            print(f"  measureUserAgentSpecificMemory after the runs (JS heaps + WASM memories): {max(e['js']):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
