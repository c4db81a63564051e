"""The on-device page in headless Chromium against a real `darkroom run` (no platform), as a
person uses it: first-visit bytes, first and repeat visit to interactive, pick -> preview,
pick -> all tiles for a 1280x960 photo, tap -> full result against the network's own time, and
the renderer's peak memory. Medians over fresh browser profiles, with the CPU and load noted.

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


def style_once(page, photo: Path, style: str = "ink") -> dict:
    """Pick ``photo``, wait for every tile, tap ``style``: the page's own timings."""
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("body[data-photo=read], body[data-photo=refused]", timeout=300_000)
    page.wait_for_selector("body[data-tiles=done]", timeout=300_000)
    page.click(f".tile[data-style={style}]")
    page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=300_000)
    data = page.evaluate("({...document.body.dataset})")
    if data["state"] != "done":
        raise SystemExit(f"styling failed: {page.text_content('#error')}")
    return {"preview": float(data["previewSeconds"]), "tiles": float(data["tilesSeconds"]),
            "result": float(data["seconds"]), "network": float(data["networkSeconds"])}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
    process, url = start_darkroom(work)
    photos = test_pictures(work)
    runs: list[dict] = []
    loads = [os.getloadavg()[0]]
    try:
        with sync_playwright() as playwright:
            for _ in range(args.repeats):
                profile = Path(tempfile.mkdtemp(prefix="profile-", dir=work))
                context = playwright.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS,
                                                                        viewport={"width": 1280, "height": 800})
                page = context.new_page()
                transferred: list[int] = []

                def finished(request, transferred=transferred):
                    sizes = request.sizes()
                    transferred.append(max(0, sizes["responseBodySize"]) + sizes["responseHeadersSize"])

                page.on("requestfinished", finished)
                started = time.perf_counter()
                page.goto(url)
                page.wait_for_selector("body[data-state=ready]", timeout=120_000)
                run = {"first_interactive": time.perf_counter() - started}
                page.evaluate("navigator.serviceWorker.ready.then(() => true)")  # the first visit is complete
                run["first_bytes"] = sum(transferred)
                run.update(style_once(page, photos["1280x960"]))
                run["peak"] = renderer_peak_mb(profile)
                started = time.perf_counter()
                page.reload()
                page.wait_for_selector("body[data-state=ready]", timeout=120_000)
                run["repeat_interactive"] = time.perf_counter() - started
                runs.append(run)
                context.close()
                loads.append(os.getloadavg()[0])
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"Chromium {subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True).stdout.strip()}; {cpu_model()}, "
          f"{os.cpu_count()} CPUs; load average {min(loads):.1f}-{max(loads):.1f} (shared machine); medians of {len(runs)} fresh profiles, 1280x800")
    print(f"  first visit, cold cache: {median('first_bytes') / 1e6:.2f} MB transferred (target <= 3 MB)")
    print(f"  first visit to interactive: {median('first_interactive'):.2f} s; repeat visit (reload) to interactive: "
          f"{median('repeat_interactive'):.2f} s (target <= 1 s)")
    print(f"  pick -> preview: {median('preview'):.3f} s (target <= 0.3 s)")
    print(f"  pick -> all 12 tiles, 1280x960 photo: {median('tiles'):.2f} s (target <= 2 s)")
    overhead = statistics.median(r["result"] - r["network"] for r in runs)
    print(f"  tile -> full result: {median('result'):.2f} s, of which the network {median('network'):.2f} s: "
          f"+{overhead:.2f} s (target <= +0.4 s)")
    print(f"  renderer peak resident memory (VmHWM): {max(r['peak'] for r in runs):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
