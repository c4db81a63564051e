"""Time from `darkroom run` starting to the bot being ready, with and without the kept backend
choice (inference/backends.py, `KeptChoice`).

    python bench/startup.py [--against /work/wt-base] [--rounds 3]

Each round starts the real bot against the fake Bot API from the tests (a separate process)
and measures the time from the process start to its deleteWebhook (it polls right after):
this tree with an empty data directory (the backends are timed, the choice is kept), this tree
again with that data directory (the kept choice is reused: only its PSNR check runs), and, with
``--against``, the other tree with an empty data directory. Rounds are interleaved; medians.
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

from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

TOKEN = "123456789:AAstartupBenchmarkTokenNotReal_abcd"


async def ready_seconds(tree: Path, data_dir: Path) -> float:
    fake = await FakeTelegram(TOKEN).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, DARKROOM_DATA_DIR=str(data_dir),
               DARKROOM_LOG_LEVEL="WARNING", PYTHONPATH=str(tree))
    started = time.monotonic()
    bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=data_dir.parent, env=env,
                                               stderr=asyncio.subprocess.DEVNULL)
    try:
        await fake.wait_for("deleteWebhook", timeout=300)  # the last call before it polls
        return time.monotonic() - started
    finally:
        bot.terminate()
        await bot.wait()
        await fake.stop()


async def main(against: Path | None, rounds: int) -> int:
    kinds = ["this, no record", "this, record kept"] + ([f"base ({against})"] if against else [])
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            times[kinds[0]].append(await ready_seconds(ROOT, data))
            assert (data / "backend-choice.json").exists(), "no choice was kept"
            times[kinds[1]].append(await ready_seconds(ROOT, data))
        if against:
            with tempfile.TemporaryDirectory() as tmp:
                times[kinds[2]].append(await ready_seconds(against.resolve(), Path(tmp) / "data"))
    print(f"Time from `darkroom run` to ready (deleteWebhook), {rounds} interleaved round(s), {os.cpu_count()} cores:")
    for kind, values in times.items():
        print(f"  {kind}: median {statistics.median(values):.1f} s ({', '.join(f'{v:.1f}' for v in values)})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.against, args.rounds)))
