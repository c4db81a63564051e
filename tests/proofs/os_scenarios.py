"""One OS-level scenario, run as its own process inside a private network namespace:

    python -m tests.proofs.os_scenarios SCENARIO OUT_DIR [--break WHAT] [--hold SECONDS]

The process enters a new network namespace that has only loopback, starts the fake platform
API(s) there, then starts the real `darkroom run` (or `darkroom stylize`) under strace with a
fresh HOME, TMPDIR, working directory and data directory, drives a whole conversation through it
(consent, a canary photo styled and delivered, /delete_my_data), stops it with SIGTERM and writes
OUT_DIR/result.json. tests/proofs/test_os_level.py reads the trace and decides. The Telegram
webhook scenario sends its photo without a style, so the preview sheet is made and sent, and the
style is chosen on it: the sheet's whole path is under the same trace.

``--break`` runs the same scenario with one invariant broken on purpose, to show the proofs
catch it: ``telemetry`` (onnxruntime imported before Darkroom could switch its telemetry off),
``tempfile`` (the photo written to a temporary file before decoding), ``connect`` (a connection to
a loopback port that is not the platform API).

Every scenario runs with Content Credentials signing on: the data directory holds a signing
identity made before the start (`sign_on`), and the result says whether what was delivered is
signed (`signed`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.os_level import dns_lookups, enter_private_network, listing, parse_strace, strace_command

BREAKS = {
    "telemetry": "import onnxruntime  # before Darkroom: its telemetry is on\n",
    "tempfile": (
        "import tempfile\n"
        "import inference.engine as engine\n"
        "_load = engine.Engine.load\n"
        "def load(self, data, *args, **kwargs):\n"
        "    with tempfile.NamedTemporaryFile(suffix='.jpg', delete=False) as handle:\n"
        "        handle.write(bytes(data))\n"
        "    return _load(self, data, *args, **kwargs)\n"
        "engine.Engine.load = load\n"
    ),
    "connect": (
        "import socket, threading, time\n"
        "def stray():\n"
        "    time.sleep(0.5)\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', 9), timeout=1).close()\n"
        "    except OSError:\n"
        "        pass\n"
        "threading.Thread(target=stray, daemon=True).start()\n"
    ),
    "core": "import bot.safeguards.core_dumps\nbot.safeguards.core_dumps.harden_process = lambda: None  # core dumps stay on\n",
    # Half of the hardening each: either measure alone must stop a core file.
    "core-prctl-only": (
        "import resource, types, bot.safeguards.core_dumps\n"
        "bot.safeguards.core_dumps.resource = types.SimpleNamespace(\n"
        "    RLIMIT_CORE=resource.RLIMIT_CORE, getrlimit=resource.getrlimit, setrlimit=lambda *args: None)\n"
    ),
    "core-rlimit-only": (
        "import types, bot.safeguards.core_dumps\n"
        "bot.safeguards.core_dumps._libc = lambda: types.SimpleNamespace(prctl=lambda *args: 0)\n"
    ),
}


def darkroom_command(broken: str | None) -> list[str]:
    """The real command line, or the same `main` behind a prelude that breaks one invariant."""
    if broken is None:
        return [sys.executable, "-m", "bot"]
    return [sys.executable, "-c", BREAKS[broken] + "import sys\nfrom bot.cli import main\nsys.exit(main())\n"]


@dataclass
class Sandbox:
    root: Path

    def __post_init__(self) -> None:
        for d in (self.home, self.tmp, self.work, self.inputs):
            d.mkdir(parents=True, exist_ok=True)

    home = property(lambda self: self.root / "home")
    tmp = property(lambda self: self.root / "tmp")
    work = property(lambda self: self.root / "work")  # the working directory
    data = property(lambda self: self.root / "work" / "data")  # created by Darkroom itself
    inputs = property(lambda self: self.root / "inputs")
    trace = property(lambda self: self.root / "strace.txt")

    def roots(self) -> list[Path]:
        return [self.home, self.tmp, self.work]  # the data directory is inside the working one

    def environment(self, **settings: str) -> dict[str, str]:
        """A clean environment: nothing inherited that could switch telemetry off for us (the
        test process itself has ORT_DISABLE_TELEMETRY set by `import inference`)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            # Bytecode caches are the interpreter's, written at install time in production;
            # without them the trace shows only what Darkroom itself writes.
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start(box: Sandbox, argv: list[str], env: dict[str, str], broken: str | None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *strace_command(box.trace), *darkroom_command(broken), *argv,
        cwd=box.work, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def hold(box: Sandbox, started: float, seconds: float) -> None:
    """Keep the bot running until ``seconds`` after its start (onnxruntime's telemetry starts
    about 9 s after import), ending early once a name lookup is in the trace."""
    while time.monotonic() - started < seconds:
        if dns_lookups(parse_strace(box.trace.read_text(errors="replace"), box.work)):
            return
        await asyncio.sleep(0.5)


def traced_pid(process: asyncio.subprocess.Process) -> int:
    """The bot's own pid: strace's child. (A signal sent to strace itself would make it detach
    and leave the bot running.)"""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    for _ in range(100):
        pids = children.read_text().split()
        if pids:
            return int(pids[0])
        time.sleep(0.05)
    raise AssertionError("strace started no process")


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    os.kill(traced_pid(process), signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.wait(), timeout=60)
    except TimeoutError:
        os.kill(traced_pid(process), signal.SIGKILL)
        code = await process.wait()
    stderr = (await process.stderr.read()).decode(errors="replace")
    return code, stderr


async def wait_http(url: str, process: asyncio.subprocess.Process, timeout: float = 90.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError("darkroom exited during start-up: " + (await process.stderr.read()).decode()[-2000:])
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"darkroom did not answer {url}")


def sign_on(box: Sandbox) -> None:
    """Make a signing identity in the data directory, as an operator would with `darkroom
    credentials init` before the first start: every scenario runs with signing on."""
    from bot.safeguards.pseudonym import load_or_create_secret
    from bot.storage import credentials

    box.data.mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials.init(box.data, load_or_create_secret(box.data / "secret.key"), "Darkroom OS-level test")


def signed(jpegs: list[bytes], box: Sandbox) -> list[str]:
    """The Content Credentials state of each delivered result, with the data dir's root trusted."""
    from bot.storage import credentials
    from inference.provenance import read_credentials

    chain = (box.data / credentials.CHAIN).read_bytes()
    anchor = chain[chain.rfind(b"-----BEGIN CERTIFICATE-----") :]
    return [read_credentials(jpeg, anchor).state for jpeg in jpegs]


def canary():
    import numpy as np
    from PIL import Image

    from tests.conftest import portrait_path
    from tests.privacy_scan import make_canary

    return make_canary(np.asarray(Image.open(portrait_path("grace")).convert("RGB")), side=640)


# -- the scenarios ---------------------------------------------------------------------------------


async def telegram(box: Sandbox, mode: str, broken: str | None, hold_for: float) -> dict:
    from tests.conftest import ALICE, TOKEN
    from tests.fakes.telegram_api import FakeTelegram

    photo = canary()
    fake = await FakeTelegram(TOKEN).start()
    settings = dict(
        TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, TELEGRAM_MODE=mode,
        DARKROOM_DATA_DIR=str(box.data), DARKROOM_LOG_LEVEL="DEBUG",
    )
    if mode == "webhook":
        port = free_port()
        settings.update(TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram", DARKROOM_HTTP_PORT=str(port))
    sign_on(box)
    before = listing(box.roots())
    started = time.monotonic()
    process = await start(box, ["run"], box.environment(**settings), broken)
    try:
        await fake.wait_for("setWebhook" if mode == "webhook" else "deleteWebhook", timeout=90)
        await fake.consent(ALICE)
        if mode == "webhook":  # through the preview sheet: no style named, one chosen on the sheet
            await fake.send_photo_from(ALICE, photo.jpeg)
            await fake.wait_for("sendPhoto", chat_id=ALICE.id, timeout=60)
            await fake.press(ALICE, "pick:ink")
            await fake.wait_for("sendPhoto", count=2, chat_id=ALICE.id, timeout=60)
        else:
            await fake.send_photo_from(ALICE, photo.jpeg, caption="ink")
            await fake.wait_for("sendPhoto", chat_id=ALICE.id, timeout=60)
        await fake.send_text_from(ALICE, "/delete_my_data")
        await fake.wait_for_text("Receipt", chat_id=ALICE.id, timeout=90)
        await hold(box, started, hold_for)
    finally:
        code, stderr = await stop(process)
        await fake.stop()
    photos = fake.calls_to("sendPhoto", ALICE.id)
    sheets = [c for c in photos if _is_sheet(c)]
    results = [c for c in photos if not _is_sheet(c)]
    return dict(
        returncode=code, stderr=stderr, before=before, after=listing(box.roots()),
        endpoints=[["127.0.0.1", fake.port]], delivered=len(results), sheets=len(sheets),
        lifetime=time.monotonic() - started, photo=photo,
        signed=signed([c.files.get("photo", b"") for c in results], box),
    )


def _is_sheet(call) -> bool:
    """A preview sheet: a photo with the style picker under it."""
    markup = call.params.get("reply_markup") or {}
    return any(str(b.get("callback_data", "")).startswith("pick:") for row in markup.get("inline_keyboard", []) for b in row)


async def wechat(box: Sandbox, safe: bool, broken: str | None, hold_for: float) -> dict:
    from tests.e2e.test_wechat_flow import OPENID, consent_by_typing
    from tests.fakes.wechat_api import AES_KEY, APPID, APPSECRET, TOKEN, FakeWeChatApi, WeChatSender

    photo = canary()
    api = await FakeWeChatApi().start()
    port = free_port()
    settings = dict(
        WECHAT_TOKEN=TOKEN, WECHAT_APPID=APPID, WECHAT_SECRET=APPSECRET, WECHAT_API_URL=api.url,
        DARKROOM_HTTP_PORT=str(port), DARKROOM_DATA_DIR=str(box.data), DARKROOM_LOG_LEVEL="DEBUG",
    )
    if safe:
        settings["WECHAT_AES_KEY"] = AES_KEY
    sign_on(box)
    before = listing(box.roots())
    started = time.monotonic()
    process = await start(box, ["run"], box.environment(**settings), broken)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", process)
        sender = WeChatSender(f"http://127.0.0.1:{port}/wechat", aes_key=AES_KEY if safe else None)
        await consent_by_typing(api, sender)
        api.media["CANARY_MEDIA"] = photo.jpeg
        await sender.post(sender.text_xml(OPENID, "风格 水墨"), OPENID)
        await api.wait_for_text("水墨", OPENID)
        await sender.post(sender.image_xml(OPENID, "CANARY_MEDIA"), OPENID)
        await api.wait_for(lambda: any(m["msgtype"] == "image" for m in api.sent(OPENID)), timeout=60)
        await sender.post(sender.text_xml(OPENID, "删除我的数据"), OPENID)
        await api.wait_for_text("回执", OPENID)
        await hold(box, started, hold_for)
    finally:
        code, stderr = await stop(process)
        await api.stop()
    api_port = int(api.url.rsplit(":", 1)[1])
    return dict(
        returncode=code, stderr=stderr, before=before, after=listing(box.roots()),
        endpoints=[["127.0.0.1", api_port]], delivered=sum(m["msgtype"] == "image" for m in api.sent(OPENID)),
        lifetime=time.monotonic() - started, photo=photo,
        signed=signed(list(api.uploads.values()), box),
    )


async def stylize(box: Sandbox, broken: str | None, hold_for: float) -> dict:
    photo = canary()
    source = box.inputs / "me.jpg"
    source.write_bytes(photo.jpeg)
    sign_on(box)
    before = listing(box.roots())
    started = time.monotonic()
    argv = ["stylize", str(source), "-o", "out", "--style", "ink"]
    process = await start(box, argv, box.environment(), broken)
    code = await asyncio.wait_for(process.wait(), timeout=120)
    output = (await process.stderr.read() + await process.stdout.read()).decode(errors="replace")
    out = box.work / "out" / "me-ink.jpg"
    return dict(
        returncode=code, stderr=output, before=before, after=listing(box.roots()), endpoints=[],
        delivered=int(out.exists() and out.stat().st_size > 0), lifetime=time.monotonic() - started,
        photo=photo, outputs=[str(box.work / "out"), str(out)], signed=signed([out.read_bytes()] if out.exists() else [], box),
    )


SCENARIOS = {
    "telegram-polling": lambda box, broken, hold_for: telegram(box, "polling", broken, hold_for),
    "telegram-webhook": lambda box, broken, hold_for: telegram(box, "webhook", broken, hold_for),
    "wechat-plain": lambda box, broken, hold_for: wechat(box, False, broken, hold_for),
    "wechat-safe": lambda box, broken, hold_for: wechat(box, True, broken, hold_for),
    "stylize": stylize,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--break", dest="broken", choices=sorted(BREAKS))
    parser.add_argument("--hold", type=float, default=0.0, help="keep the bot running this long (seconds)")
    args = parser.parse_args()
    enter_private_network()  # before any thread or socket exists
    box = Sandbox(args.out.resolve())
    result = asyncio.run(SCENARIOS[args.scenario](box, args.broken, args.hold))
    from tests.privacy_scan import scan_files

    photo = result.pop("photo")
    result.update(
        scenario=args.scenario, broken=args.broken, trace=str(box.trace), cwd=str(box.work),
        home=str(box.home), tmp=str(box.tmp), data=str(box.data),
        canary_at_rest=scan_files(box.roots(), photo.needles),
    )
    (box.root / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
