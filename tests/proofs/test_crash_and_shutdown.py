"""The real `darkroom run` process, killed with SIGKILL in the middle of styling, then restarted
and stopped with SIGTERM, against the fake Bot API in this test process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from bot.storage.audit import audit
from tests.conftest import SECRET, TOKEN
from tests.fakes.telegram_api import User
from tests.privacy_scan import make_canary, now, rest_roots, scan_files, scan_text

YUKI = User(555000111, "Yukiko", "yuki_no_hana", "en")


async def start_bot(fake, data_dir: Path, workdir: Path, **extra: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake.url,
        DARKROOM_DATA_DIR=str(data_dir),
        DARKROOM_SECRET=SECRET,
        DARKROOM_LOG_LEVEL="DEBUG",
        **extra,
    )
    calls_before = len(fake.calls_to("deleteWebhook"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    await fake.wait_for("deleteWebhook", count=calls_before + 1, timeout=60)  # polling has started
    return process


async def test_kill_9_mid_styling_then_restart_and_sigterm(fake_telegram, tmp_path, grace_rgb):
    fake = fake_telegram
    data_dir, workdir = tmp_path / "data", tmp_path / "work"
    workdir.mkdir()
    canary = make_canary(grace_rgb, side=1280)
    started = now()

    # 1. Consent, a favourite style, and a big photo: kill -9 while it is being styled.
    first = await start_bot(fake, data_dir, workdir)
    await fake.consent_with_style(YUKI, "oil")
    await fake.send_photo_from(YUKI, canary.jpeg, caption="my secret caption")
    await fake.wait_for_edit("Styling", chat_id=YUKI.id)
    for _ in range(200):
        if fake.file_downloads:
            break
        await asyncio.sleep(0.01)
    assert fake.file_downloads, "the photo was not downloaded"
    await asyncio.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    stderr_first = (await first.stderr.read()).decode()
    assert fake.calls_to("sendPhoto") == [], "killed too late: the photo was already answered"

    # Nothing of the photo anywhere at rest; the database opens cleanly with consent intact.
    assert scan_files(rest_roots(data_dir) + [workdir], canary.needles, since=started) == []
    with sqlite3.connect(data_dir / "darkroom.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM consents").fetchone()[0] == 1
        assert db.execute("SELECT style FROM preferences").fetchone()[0] == "oil"
        assert db.execute("SELECT COUNT(*) FROM inflight").fetchone()[0] == 1

    # 2. Restart: the person is told to send the photo again; the bot serves on.
    second = await start_bot(fake, data_dir, workdir)
    told = await fake.wait_for_text("restarted while styling your photo", chat_id=YUKI.id, timeout=60)
    assert "send it again" in told.params["text"]
    await fake.send_text_from(YUKI, "/privacy")
    await fake.wait_for_text("favourite style oil", chat_id=YUKI.id)

    # 3. SIGTERM with a photo in progress: it is finished or the person is told, within bounds.
    fake.delays["file"] = 2.0
    styling = len(fake.calls_to("editMessageText", YUKI.id))
    await fake.send_photo_from(YUKI, canary.jpeg)
    await fake.wait_for("editMessageText", count=styling + 1, chat_id=YUKI.id)  # this photo's "Styling", not the first one's
    stopping = time.monotonic()
    second.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(second.wait(), timeout=30)
    took = time.monotonic() - stopping
    stderr_second = (await second.stderr.read()).decode()
    assert code == 0, stderr_second[-2000:]
    assert took < 20
    edits = [c.params["text"] for c in fake.calls_to("editMessageText", YUKI.id)]
    finished = len(fake.calls_to("sendPhoto", YUKI.id)) == 1
    assert finished or any("Darkroom is restarting" in e for e in edits), (edits, stderr_second[-3000:])
    with sqlite3.connect(data_dir / "darkroom.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM inflight").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM consents").fetchone()[0] == 1
    assert not (data_dir / "darkroom.sqlite3-wal").exists() or (data_dir / "darkroom.sqlite3-wal").stat().st_size == 0
    assert audit(data_dir, out=open(os.devnull, "w")) == 0

    # Nothing of the photo at rest after all that; nothing identifying in either process's log.
    assert scan_files(rest_roots(data_dir) + [workdir], canary.needles, since=started) == []
    file_ids = [fid for fid, (data, _) in fake.files.items() if data == canary.jpeg]
    identifiers = [str(YUKI.id), YUKI.username, YUKI.first_name, "secret caption", TOKEN, *file_ids]
    assert "DEBUG" in stderr_first + stderr_second
    assert scan_text([stderr_first, stderr_second], identifiers + [canary.marker.decode()]) == []
