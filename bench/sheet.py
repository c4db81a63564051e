"""How long the chat's preview sheet takes: from the photo's download to the sheet sent.

    python bench/sheet.py [--runs 5]

Starts the real bot (`darkroom run`, a separate process, embedded defaults with the preview
sheet on) against the fake Bot API from the tests, gives consent once, then sends a 1280x960
JPEG portrait without a caption, ``--runs`` times after a warm-up (each new photo replaces the
last one's sheet). For each run it prints the time from the bot's download of the photo (the
fake's file request) to the sendPhoto that carries the sheet arriving, and from the update to
it; then the medians, and the engine's own sheet time for the same photo in this process
(render_sheet: 15 styles at 240 px, compose, encode). Target: download -> sheet sent <= 1 s
on 2 cores. The CPU, its flags and the load average are printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bench.load import portrait_jpeg  # noqa: E402
from bench.telegram_latency import TOKEN, start_bot  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, User  # noqa: E402


class TimedFake(FakeTelegram):
    """The fake Bot API, noting when each file download was asked for."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.downloads: list[float] = []

    async def _file(self, request: web.Request) -> web.Response:
        self.downloads.append(time.monotonic())
        return await super()._file(request)


def machine() -> str:
    cpuinfo = open("/proc/cpuinfo").read().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    shown = [f for f in flags if f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, {model}; flags: {' '.join(shown)}; load average {load}"


def engine_alone(jpeg: bytes, runs: int) -> list[float]:
    from inference import Engine

    engine = Engine()
    engine.verify()
    picture = engine.load(jpeg)
    engine.render_sheet(picture)  # compiles the tile's shape once, as the bot's first sheet does
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        engine.render_sheet(picture)
        times.append(time.perf_counter() - started)
    return times


async def in_the_chat(jpeg: bytes, runs: int) -> tuple[list[float], list[float]]:
    fake = await TimedFake(TOKEN).start()
    person = User(424242, "Bench", "bench_user", "en")
    from_download, from_update = [], []
    with tempfile.TemporaryDirectory() as tmp:
        process = await start_bot(fake, Path(tmp) / "data")
        try:
            await fake.consent(person)
            for run in range(runs + 1):  # the first is a warm-up (it compiles the tile's shape)
                downloads = len(fake.downloads)
                await fake.send_photo_from(person, jpeg)
                handed = time.monotonic()
                await fake.wait_for("sendPhoto", count=run + 1, chat_id=person.id, timeout=120)
                sheet = fake.calls_to("sendPhoto", person.id)[run]
                assert sheet.params.get("reply_markup"), "that was not a preview sheet"
                if run:
                    from_download.append(sheet.at - fake.downloads[downloads])
                    from_update.append(sheet.at - handed)
        finally:
            process.terminate()
            await process.wait()
            await fake.stop()
    return from_download, from_update


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    jpeg = portrait_jpeg()
    print(machine())
    alone = engine_alone(jpeg, 3)
    from_download, from_update = asyncio.run(in_the_chat(jpeg, args.runs))
    print(f"preview sheet for a 1280x960 JPEG portrait, {args.runs} runs after a warm-up:")
    print("  download -> sheet sent: " + ", ".join(f"{t:.2f}s" for t in from_download))
    print(f"  median {statistics.median(from_download):.2f}s (target <= 1 s on 2 cores)")
    print("  update -> sheet sent:   " + ", ".join(f"{t:.2f}s" for t in from_update))
    print(f"  median {statistics.median(from_update):.2f}s")
    print(f"engine alone (15 styles at 240 px, compose, encode), median of 3: {statistics.median(alone):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
