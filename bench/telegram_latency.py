"""Time from an update reaching the bot to the styled photo reaching Telegram.

    python bench/telegram_latency.py

Starts the real bot (`darkroom run`, as a separate process) against the fake Bot API from the
tests, gives consent once, then sends a 1280x960 JPEG portrait five times with the catalogue's
default style named in the caption, one after the other, and prints the time from the update
being handed to the bot (its getUpdates answer) to the sendPhoto request arriving: each run and
the median. For comparison it also prints the engine's own time for the same photo (decode, faces,
style, encode) measured in this process.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.fakes.telegram_api import FakeTelegram, User  # noqa: E402

RUNS = 5
TOKEN = "123456789:AAbenchmarkTokenNotReal_abcdefghij"


def portrait_jpeg() -> bytes:
    """A 1280x960 selfie-like portrait with one face: the public-domain astronaut (skimage),
    960x960, widened to 1280 by mirroring its sides."""
    import cv2
    import skimage

    astronaut = np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB"))
    square = cv2.resize(astronaut, (960, 960), interpolation=cv2.INTER_CUBIC)
    wide = cv2.copyMakeBorder(square, 0, 0, 160, 160, cv2.BORDER_REFLECT_101)
    out = io.BytesIO()
    Image.fromarray(wide).save(out, "JPEG", quality=92)
    return out.getvalue()


async def start_bot(fake: FakeTelegram, data_dir: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, DARKROOM_DATA_DIR=str(data_dir), DARKROOM_LOG_LEVEL="WARNING")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=data_dir.parent, env=env, stderr=asyncio.subprocess.DEVNULL
    )
    await fake.wait_for("deleteWebhook", timeout=120)
    return process


async def main() -> int:
    jpeg = portrait_jpeg()
    from inference import Engine, StyleRequest

    engine = Engine()
    engine.verify()
    style = engine.catalogue.default.key
    engine.stylize(jpeg, StyleRequest(style))
    engine_times = []
    for _ in range(3):
        started = time.perf_counter()
        engine.stylize(jpeg, StyleRequest(style))
        engine_times.append(time.perf_counter() - started)
    del engine

    fake = await FakeTelegram(TOKEN).start()
    person = User(424242, "Bench", "bench_user", "en")
    with tempfile.TemporaryDirectory() as tmp:
        process = await start_bot(fake, Path(tmp) / "data")
        try:
            await fake.send_text_from(person, "/start")
            await fake.wait_for_text("Do you agree?", chat_id=person.id)
            await fake.press(person, "consent:agree")
            await fake.wait_for_text("Thank you", chat_id=person.id)
            latencies = []
            for run in range(RUNS + 1):  # the first is a warm-up
                await fake.send_photo_from(person, jpeg, caption=style)
                handed = time.monotonic()
                await fake.wait_for("sendPhoto", count=run + 1, chat_id=person.id, timeout=120)
                reply = fake.calls_to("sendPhoto", person.id)[run]
                if run:
                    latencies.append(reply.at - handed)
                await fake.wait_for("deleteMessage", count=run + 1, chat_id=person.id)
        finally:
            process.terminate()
            await process.wait()
            await fake.stop()
    width, height = Image.open(io.BytesIO(jpeg)).size
    print(f"update -> sendPhoto for a {width}x{height} JPEG, style {style!r} (the catalogue default), {RUNS} runs:")
    print("  " + ", ".join(f"{t:.2f}s" for t in latencies))
    print(f"  median {statistics.median(latencies):.2f}s")
    print(f"engine alone (decode, faces, style, encode), median of 3: {statistics.median(engine_times):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
