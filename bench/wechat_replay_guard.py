"""What the WeChat replay guard costs per callback: two `Storage.first_sight` calls (the
(timestamp, nonce) pair and the MsgId), each a prune, an insert and a commit on the SQLite file,
measured with many live rows (a busy 5-minute window). Prints medians in microseconds.

    python -m bench.wechat_replay_guard [live_rows] [callbacks]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.storage.store import Storage


async def main(live_rows: int, callbacks: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        storage = await Storage.open(Path(directory) / "darkroom.sqlite3", b"b" * 64)
        now = int(time.time())
        for i in range(live_rows):
            await storage.first_sight(f"live-{i:032x}", "d" * 32, now + 300, now=now)
        new, repeat = [], []
        for i in range(callbacks):
            started = time.perf_counter()
            await storage.first_sight(f"pair-{i:032x}", "d" * 32, now + 300, now=now)
            await storage.first_sight(f"msg-{i:032x}", "", now + 300, now=now)
            new.append(time.perf_counter() - started)
            started = time.perf_counter()
            await storage.first_sight(f"pair-{i:032x}", "d" * 32, now + 300, now=now)
            repeat.append(time.perf_counter() - started)
        await storage.close()
    print(f"live rows {live_rows}, callbacks {callbacks}")
    print(f"new callback (pair + MsgId): median {statistics.median(new) * 1e6:.0f} us, p95 {sorted(new)[int(len(new) * 0.95)] * 1e6:.0f} us")
    print(f"replayed pair:               median {statistics.median(repeat) * 1e6:.0f} us")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [5000, 1000][len(args):])))
