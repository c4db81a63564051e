"""What each storage call costs on SQLite and on PostgreSQL, measured in turns.

    eval "$(tests/services/postgres.sh start)"
    python bench/storage_engines.py [rounds]     # uses DARKROOM_TEST_POSTGRES_URL

For every round and engine (alternating, so machine noise hits both alike): read a consent,
record one, set preferences, a replay-guard check, start and finish a job, and erase a person
(with the SQLite WAL checkpoint or the PostgreSQL VACUUM that follows). Prints the median and the
90th percentile in milliseconds, and the PostgreSQL/SQLite ratio of the medians. The tables hold
`--people` other persons so that VACUUM and the indexes have something to work through.
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

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from bot.storage.store import Storage  # noqa: E402
from handlers.events import Address  # noqa: E402
from handlers.ports import ConsentRecord, Preferences  # noqa: E402

RECORD = ConsentRecord("v1", "a" * 64, "en", 1_700_000_000)


async def fill(storage: Storage, people: int) -> None:
    for i in range(people):
        await storage.record_consent(f"other-{i}", RECORD)
        await storage.set_preferences(f"other-{i}", Preferences("ink"))


async def one_round(storage: Storage, n: int, timings: dict[str, list[float]]) -> None:
    person = f"bench-{n}"

    async def timed(name, call):
        start = time.perf_counter()
        result = await call
        timings.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return result

    await timed("consent (read)", storage.consent(person))
    await timed("record_consent", storage.record_consent(person, RECORD))
    await timed("set_preferences", storage.set_preferences(person, Preferences("toon", 0.5)))
    await timed("first_sight", storage.first_sight(f"key-{n}", "d", expires_at=int(time.time()) + 300))
    row = await timed("job_started", storage.job_started(person, Address("telegram", "1"), "en"))
    await timed("job_finished", storage.job_finished(row))
    await timed("delete_person (+purge)", storage.delete_person(person))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rounds", type=int, nargs="?", default=30)
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()
    url = os.environ.get("DARKROOM_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set DARKROOM_TEST_POSTGRES_URL (tests/services/postgres.sh start)")
    secret = b"b" * 32
    with tempfile.TemporaryDirectory() as tmp:
        engines = {
            "sqlite": await Storage.open(Path(tmp) / "bench.sqlite3", secret),
            "postgresql": await Storage.open_postgres(url, secret),
        }
        try:
            for storage in engines.values():
                await storage.delete_person("nobody")  # warm up
                for table in await storage.tables():
                    await storage._db.execute(f"DELETE FROM {table}")
                await fill(storage, args.people)
            timings: dict[str, dict[str, list[float]]] = {name: {} for name in engines}
            for n in range(args.rounds):
                for name, storage in engines.items():
                    await one_round(storage, n, timings[name])
        finally:
            for storage in engines.values():
                for table in await storage.tables():
                    await storage._db.execute(f"DELETE FROM {table}")
                await storage.close()
    print(f"{args.rounds} rounds, {args.people} other people in the tables; milliseconds, median (p90)")
    print(f"{'call':<24} {'sqlite':>16} {'postgresql':>16} {'ratio':>7}")
    for call in timings["sqlite"]:
        cells = []
        for name in engines:
            values = sorted(timings[name][call])
            cells.append(f"{statistics.median(values):7.2f} ({values[int(len(values) * 0.9) - 1]:6.2f})")
        ratio = statistics.median(timings["postgresql"][call]) / statistics.median(timings["sqlite"][call])
        print(f"{call:<24} {cells[0]:>16} {cells[1]:>16} {ratio:6.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
