"""Flood benchmark: one person floods the bot while 20 others use it.

    python bench/flood.py [--people 20] [--commands 400] [--photos 1000]

Starts the real bot (`darkroom run`, a separate process) against the fake Bot API from the
tests. Everyone gives consent first. Then, in one run of the bot:

  A1  unflooded: each well-behaved person sends /help, presses a button, and all of them send
      one photo at the same moment;
  B   flooded: the flooder's chat is answered slowly (0.3 s a call) and under Telegram's flood
      control (429 with retry_after for that chat only); the flooder sends 400 commands, then
      1000 photos; meanwhile the well-behaved people do the same as in A1;
  A2  unflooded again (the flood is lifted), to see how much the machine drifted;
  C   the flooder floods again and the bot gets SIGTERM while that chat is in flood wait.

It prints the p95 answer time of the well-behaved people's commands and button presses (target
< 1 s), their photos' p95 flooded vs unflooded (target within 1.5x), how many messages the
flooder's chat got, and how long SIGTERM took (target < grace + 5 s = 15 s). The machine's
noise shows as the difference between A1 and A2 and in the engine's single-photo times measured
before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.load import percentile, portrait_jpeg  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, User  # noqa: E402

TOKEN = "123456789:AAfloodBenchmarkTokenNotReal_abcdef"
GRACE = 10.0  # `darkroom run` gives running jobs 10 s on SIGTERM
SLOW = 0.3  # seconds per call to the flooder's chat
FLOOD_EVERY = 2.0  # Telegram lets one message through to the flooder's chat every this many seconds


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


async def consent(fake: FakeTelegram, user: User) -> dict:
    await fake.send_text_from(user, "/start")
    notice = (await fake.wait_for_text("Do you agree?", chat_id=user.id, timeout=120)).result
    before = len(fake.calls_to("sendMessage", user.id))
    await fake.press(user, "consent:agree", message=notice)
    await fake.wait_for("sendMessage", count=before + 1, chat_id=user.id, timeout=120)
    return notice


async def help_time(fake: FakeTelegram, user: User) -> float:
    before = len(fake.calls_to("sendMessage", user.id))
    sent = time.monotonic()
    await fake.send_text_from(user, "/help")
    calls = await fake.wait_for("sendMessage", count=before + 1, chat_id=user.id, timeout=300)
    return calls[before].at - sent


async def press_time(fake: FakeTelegram, user: User, notice: dict) -> float:
    pressed = time.monotonic()
    update = await fake.press(user, "consent:agree", message=notice)
    handle = update["callback_query"]["id"]
    calls = await fake.wait_for("answerCallbackQuery", timeout=300, where=lambda c: c.params.get("callback_query_id") == handle)
    return calls[0].at - pressed


async def photo_time(fake: FakeTelegram, user: User, jpeg: bytes, style: str) -> float:
    before = len(fake.calls_to("sendPhoto", user.id))
    sent = time.monotonic()
    await fake.send_photo_from(user, jpeg, caption=style)
    calls = await fake.wait_for("sendPhoto", count=before + 1, chat_id=user.id, timeout=600)
    return calls[before].at - sent


async def phase(fake: FakeTelegram, people: list[User], notices: dict[int, dict], jpeg: bytes, style: str) -> dict:
    """What every well-behaved person does: a command, a button press, then one photo, all at
    once. Commands and presses are spread over a second, as people would."""

    async def interact(i: int, user: User) -> tuple[float, float]:
        await asyncio.sleep(i * 0.05)
        return await help_time(fake, user), await press_time(fake, user, notices[user.id])

    answers = await asyncio.gather(*(interact(i, u) for i, u in enumerate(people)))
    photos = await asyncio.gather(*(photo_time(fake, u, jpeg, style) for u in people))
    return {
        "commands": [a for a, _ in answers],
        "presses": [p for _, p in answers],
        "photos": list(photos),
    }


async def flood(fake: FakeTelegram, flooder: User, commands: int, photos: int, jpeg: bytes, style: str) -> None:
    for _ in range(commands):
        await fake.send_text_from(flooder, "/help")
    for _ in range(photos):
        await fake.send_photo_from(flooder, jpeg, caption=style)


def engine_times(engine, jpeg: bytes, style: str, runs: int = 3) -> list[float]:
    from inference import StyleRequest

    engine.stylize(jpeg, StyleRequest(style))
    times = []
    for _ in range(runs):
        begun = time.perf_counter()
        engine.stylize(jpeg, StyleRequest(style))
        times.append(time.perf_counter() - begun)
    return times


async def main(people_count: int, commands: int, photos: int) -> int:
    jpeg = portrait_jpeg()
    from inference import Engine

    engine = Engine()
    engine.verify()
    style = engine.catalogue.default.key
    single_before = engine_times(engine, jpeg, style)
    load_before = loadavg()

    fake = await FakeTelegram(TOKEN).start()
    people = [User(30_000 + i, f"Person{i}", f"person_{i}", "en") for i in range(people_count)]
    flooder = User(99_999, "Flooder", "flooder", "en")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
        env.update(
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_URL=fake.url,
            DARKROOM_DATA_DIR=str(Path(tmp) / "data"),
            DARKROOM_LOG_LEVEL="WARNING",
        )
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp, env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await fake.wait_for("deleteWebhook", timeout=180)
            notices = dict(zip([u.id for u in people], await asyncio.gather(*(consent(fake, u) for u in people))))
            await consent(fake, flooder)

            results["A1"] = await phase(fake, people, notices, jpeg, style)

            fake.chat_delays[flooder.id] = SLOW
            fake.chat_floods[flooder.id] = FLOOD_EVERY
            to_flooder_before = len([c for c in fake.calls if int(c.params.get("chat_id") or 0) == flooder.id])
            # The people start as the flood starts: their updates queue up among the flooder's.
            flooding = asyncio.create_task(flood(fake, flooder, commands, photos, jpeg, style))
            await asyncio.sleep(0)
            results["B"] = await phase(fake, people, notices, jpeg, style)
            await flooding
            to_flooder = [c for c in fake.calls if int(c.params.get("chat_id") or 0) == flooder.id][to_flooder_before:]

            del fake.chat_delays[flooder.id], fake.chat_floods[flooder.id]
            await asyncio.sleep(FLOOD_EVERY + 1)
            results["A2"] = await phase(fake, people, notices, jpeg, style)

            fake.chat_delays[flooder.id] = SLOW
            fake.chat_floods[flooder.id] = 60.0  # a long flood wait, to be in when SIGTERM comes
            await flood(fake, flooder, commands, 0, jpeg, style)
            await fake.wait_for("sendMessage!flood", timeout=60)
            await asyncio.sleep(1.0)
            stopping = time.monotonic()
            bot.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(bot.wait(), timeout=300)
            sigterm = time.monotonic() - stopping
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
            await fake.stop()
    load_after = loadavg()
    single_after = engine_times(engine, jpeg, style)

    def p95(values: list[float]) -> float:
        return percentile(values, 95)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    interactive_b = p95(results["B"]["commands"] + results["B"]["presses"])
    unflooded_photos = statistics.median([p95(results["A1"]["photos"]), p95(results["A2"]["photos"])])
    flooded_photos = p95(results["B"]["photos"])
    sent = [c for c in to_flooder if "!" not in c.method]
    refused = [c for c in to_flooder if "!" in c.method]
    print(f"Darkroom flood benchmark: {people_count} people; one flooder sends {commands} commands then {photos} photos "
          f"(their chat: {SLOW}s a call, 429 unless {FLOOD_EVERY}s apart); style {style!r}")
    for name in ("A1", "B", "A2"):
        r = results[name]
        print(f"  {name:2} {'flooded  ' if name == 'B' else 'unflooded'}: /help p50 {percentile(r['commands'], 50) * 1000:.0f} ms "
              f"p95 {p95(r['commands']) * 1000:.0f} ms; button p50 {percentile(r['presses'], 50) * 1000:.0f} ms "
              f"p95 {p95(r['presses']) * 1000:.0f} ms; photo p50 {percentile(r['photos'], 50):.1f}s p95 {p95(r['photos']):.1f}s")
    print(f"commands and button presses while flooded: p95 {interactive_b * 1000:.0f} ms (target < 1000 ms): "
          f"{verdict(interactive_b < 1.0)}")
    print(f"photos while flooded: p95 {flooded_photos:.1f}s vs unflooded {unflooded_photos:.1f}s (median of A1, A2) = "
          f"{flooded_photos / unflooded_photos:.2f}x (target <= 1.5x): {verdict(flooded_photos <= 1.5 * unflooded_photos)}")
    print(f"the flooder's chat during B: {len(sent)} calls answered, {len(refused)} refused with 429 "
          f"(for {commands} commands and {photos} photos)")
    print(f"SIGTERM during a 60 s flood wait: exit code {code} after {sigterm:.1f}s (target < {GRACE + 5:.0f}s): "
          f"{verdict(code == 0 and sigterm < GRACE + 5)}")
    print(f"noise: engine single photo {statistics.median(single_before):.2f}s before, {statistics.median(single_after):.2f}s after "
          f"(runs {', '.join(f'{t:.2f}' for t in single_before + single_after)}); unflooded photo p95 A1 "
          f"{p95(results['A1']['photos']):.1f}s vs A2 {p95(results['A2']['photos']):.1f}s; "
          f"load average {load_before} before, {load_after} after, on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--commands", type=int, default=400)
    parser.add_argument("--photos", type=int, default=1000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.people, args.commands, args.photos)))
