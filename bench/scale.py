"""Scale-out benchmark: the in-process bot against one front with 1 and 2 Celery workers.

    python bench/scale.py [--people 50] [--rounds 1]

Each set-up runs the real processes against the fake Bot API from the tests, with a private
redis-server (no persistence) for the broker: `darkroom run` alone (styling in-process, every
core), then `darkroom run` + 1 and + 2 `darkroom worker`s with one styling process of one
thread each. Every time, `--people` people who agreed send one 1280x960 photo at once. Printed
per set-up: photos per minute, update → sendPhoto p50/p95, dispatch overhead per job (the
front's time per job minus the worker's, both from their /metrics), peak RSS of each process,
and whether every person was answered exactly once. `--rounds` repeats the three set-ups
interleaved (the machine is shared: compare the ratios, not the absolute numbers).

Targets: dispatch overhead <= 20 ms per job; 2 single-thread workers >= 90% of the in-process
bot's throughput on the same cores; every person answered exactly once.

    python bench/scale.py --against /work/wt-base [--people 24] [--rounds 2] [--workers 2]

compares this tree with another checkout (e.g. a worktree of the base commit) in the same run:
the front with ``--workers`` single-thread workers of each tree in turn (``PYTHONPATH=<tree>``,
this venv's libraries), rounds interleaved and their order alternated, printing each tree's
photos per minute, the peak RSS of all its processes together, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.load import peak_rss_mb, percentile, portrait_jpeg  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, User  # noqa: E402

TOKEN = "123456789:AAscaleBenchmarkTokenNotReal_abcdef"
SECRET = "s" * 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(darkroom_job_seconds_(?:sum|count)) ([0-9.e+-]+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def ready(port: int, front: bool = False) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            return False  # 503: not yet
    except OSError:  # refused
        return False
    # An older tree (--against) without /readyz: a worker is ready once its /metrics answers
    # (its styling process has loaded its engine); a front once it answers at all.
    if front:
        return True
    try:
        scrape(port)
        return True
    except OSError:
        return False


def family_rss(pid: int) -> list[float]:
    """Peak RSS of a process and of its descendants (a worker's styling processes, and their
    decode server where there is one), the process itself first."""
    parents = {int(p): _parent(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    family, grew = [pid], True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.append(child)
                grew = True
    return [peak_rss_mb(p) for p in family]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


async def run_setup(workers: int, people: int, jpeg: bytes, style: str, tree: Path | None = None) -> dict:
    fake = await FakeTelegram(TOKEN).start()
    crowd = [User(30_000 + i, f"P{i}", f"p_{i}", "en") for i in range(people)]
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
        env.update(
            TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, DARKROOM_SECRET=SECRET, DARKROOM_LOG_LEVEL="WARNING",
            DARKROOM_QUEUE_LIMIT=str(people + 10), DARKROOM_RATE_LIMIT_PER_HOUR="0",
        )
        if tree is not None:  # --against: that checkout's code with this venv's libraries
            env["PYTHONPATH"] = str(tree)
        front_port = free_port()
        worker_ports: list[int] = []
        redis = None
        if workers:
            redis_port = free_port()
            redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
                stdout=subprocess.DEVNULL,
            )
            env.update(DARKROOM_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0", DARKROOM_WORKER_SLOTS=str(workers))
            for i in range(workers):
                port = free_port()
                worker_ports.append(port)
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "bot", "worker"], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={**env, "DARKROOM_DATA_DIR": f"{tmp}/w{i}", "DARKROOM_THREADS": "1", "DARKROOM_WORKER_CONCURRENCY": "1",
                         "DARKROOM_WORKER_METRICS_PORT": str(port)},
                    start_new_session=True,
                ))
        front = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], cwd=tmp, stderr=subprocess.DEVNULL,
            env={**env, "DARKROOM_DATA_DIR": f"{tmp}/front", "DARKROOM_METRICS": "true", "DARKROOM_HTTP_PORT": str(front_port)},
        )
        try:
            await fake.wait_for("deleteWebhook", timeout=120)
            # Each worker ready (its styling process loaded its engine and is free), then the
            # front ready (scaled out: it sees a free worker), both by their GET /readyz.
            for port in [*worker_ports, front_port]:
                deadline = time.monotonic() + 180
                while not ready(port, front=port == front_port):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"not ready in time (port {port})")
                    await asyncio.sleep(0.3)
            await asyncio.gather(*(fake.send_text_from(u, "/start") for u in crowd))
            await fake.wait_for("sendMessage", count=people, timeout=120)
            notices = {int(c.params["chat_id"]): c.result for c in fake.calls_to("sendMessage")}
            await asyncio.gather(*(fake.press(u, "consent:agree", message=notices[u.id]) for u in crowd))
            await fake.wait_for("sendMessage", count=2 * people, timeout=120)
            overhead = None
            if worker_ports:
                # Dispatch overhead, one job at a time (nothing waits for a worker): the front's
                # time per job minus the worker's, from their /metrics.
                before = scrape(front_port), [scrape(p) for p in worker_ports]
                solo = crowd[0]
                for i in range(5):
                    await fake.send_photo_from(solo, jpeg, caption=style)
                    await fake.wait_for("sendPhoto", count=i + 1, timeout=120)
                    await asyncio.sleep(0.5)  # the front finishes the job's bookkeeping
                after = scrape(front_port), [scrape(p) for p in worker_ports]
                front_time = after[0]["darkroom_job_seconds_sum"] - before[0]["darkroom_job_seconds_sum"]
                worker_time = sum(a["darkroom_job_seconds_sum"] - b["darkroom_job_seconds_sum"] for a, b in zip(after[1], before[1]))
                overhead = (front_time - worker_time) / 5
                fake.calls = [c for c in fake.calls if c.method != "sendPhoto"]
            sent_at: dict[int, float] = {}
            started = time.monotonic()
            for user in crowd:
                await fake.send_photo_from(user, jpeg, caption=style)
                sent_at[user.id] = time.monotonic()
            await fake.wait_for("sendPhoto", count=people, timeout=120 + people * 20)
            await asyncio.sleep(1.0)
            photos = fake.calls_to("sendPhoto")
            finished = max(c.at for c in photos)
            rss = {"front": family_rss(front.pid)[0]}
            for i, process in enumerate(processes):
                family = family_rss(process.pid)
                rss[f"worker{i}"] = family[0]
                for j, child in enumerate(family[1:]):
                    rss[f"worker{i}.styler{j}"] = child
        finally:
            front.terminate()
            front.wait(timeout=60)
            for process in processes:
                os.killpg(process.pid, 15)
                process.wait(timeout=60)
            if redis is not None:
                redis.kill()
                redis.wait()
            await fake.stop()
    per_chat: dict[int, int] = {}
    first: dict[int, float] = {}
    for call in photos:
        chat = int(call.params["chat_id"])
        per_chat[chat] = per_chat.get(chat, 0) + 1
        first.setdefault(chat, call.at)
    latencies = [first[u.id] - sent_at[u.id] for u in crowd if u.id in first]
    return {
        "per_minute": len(photos) / (finished - started) * 60,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "overhead": overhead,
        "rss": rss,
        "exactly_once": all(per_chat.get(u.id, 0) == 1 for u in crowd),
    }


async def main(people: int, rounds: int) -> int:
    if shutil.which("redis-server") is None:
        print("bench/scale.py needs redis-server on PATH")
        return 2
    from inference import Engine

    jpeg = portrait_jpeg()
    style = Engine().catalogue.default.key
    names = {0: "in-process (1 process, all cores)", 1: "front + 1 worker (1 thread)", 2: "front + 2 workers (1 thread each)"}
    results: dict[int, list[dict]] = {0: [], 1: [], 2: []}
    for _ in range(rounds):
        for workers in (0, 1, 2):
            results[workers].append(await run_setup(workers, people, jpeg, style))
    print(f"Darkroom scale benchmark: {people} people at once, one 1280x960 photo each, style {style!r}, "
          f"{rounds} interleaved round(s), {os.cpu_count()} cores")
    base = statistics.median(r["per_minute"] for r in results[0])
    for workers, runs in results.items():
        rate = statistics.median(r["per_minute"] for r in runs)
        line = (f"{names[workers]}: {rate:.1f} photos/min ({rate / base:.0%} of in-process); "
                f"update -> sendPhoto p50 {statistics.median(r['p50'] for r in runs):.1f}s, "
                f"p95 {statistics.median(r['p95'] for r in runs):.1f}s")
        if workers:
            overhead = statistics.median(r["overhead"] for r in runs) * 1000
            line += f"; dispatch overhead {overhead:.1f} ms/job (target <= 20): {'PASS' if overhead <= 20 else 'FAIL'}"
        once = all(r["exactly_once"] for r in runs)
        line += f"; everyone answered exactly once: {'PASS' if once else 'FAIL'}"
        print(line)
        rss = runs[-1]["rss"]
        print("    peak RSS: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()))
    two = statistics.median(r["per_minute"] for r in results[2])
    print(f"2 single-thread workers vs in-process on the same cores: {two / base:.0%} (target >= 90%): "
          f"{'PASS' if two >= 0.9 * base else 'FAIL'}")
    return 0


async def against(other: Path, people: int, rounds: int, workers: int) -> int:
    if shutil.which("redis-server") is None:
        print("bench/scale.py needs redis-server on PATH")
        return 2
    from inference import Engine

    jpeg = portrait_jpeg()
    style = Engine().catalogue.default.key
    trees = {"this tree": ROOT, other.name: other.resolve()}
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for round_ in range(rounds):
        for name in list(trees) if round_ % 2 == 0 else list(reversed(trees)):
            results[name].append(await run_setup(workers, people, jpeg, style, tree=trees[name]))
    print(f"front + {workers} single-thread workers, {people} people at once, one 1280x960 photo each, style {style!r}, "
          f"{rounds} interleaved round(s), {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
    rates = {name: statistics.median(r["per_minute"] for r in runs) for name, runs in results.items()}
    peaks = {name: max(sum(r["rss"].values()) for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        each = ", ".join(f"{r['per_minute']:.1f}" for r in runs)
        once = all(r["exactly_once"] for r in runs)
        print(f"  {name}: {rates[name]:.1f} photos/min (rounds: {each}); peak RSS of all its processes together "
              f"{peaks[name]:.0f} MB; everyone answered exactly once: {'PASS' if once else 'FAIL'}")
    this, that = rates["this tree"], rates[other.name]
    print(f"  photos/min: {this / that:.2f}x {other.name}; peak RSS: {peaks['this tree'] / peaks[other.name]:.2f}x")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--against", type=Path, help="another checkout to compare with, in the same run")
    parser.add_argument("--workers", type=int, default=2, help="with --against: single-thread workers per front")
    args = parser.parse_args()
    if args.against:
        sys.exit(asyncio.run(against(args.against, args.people, args.rounds, args.workers)))
    sys.exit(asyncio.run(main(args.people, args.rounds)))
