"""Start-up failures through the real `darkroom run` process: each ends with exactly one clear
line on stderr and a non-zero exit, never a traceback, never a secret or a payload."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import ALICE, SECRET, TOKEN
from tests.fakes.telegram_api import Failure


async def run_darkroom(fake, tmp_path: Path, data_dir: Path, **extra: str) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake.url,
        DARKROOM_DATA_DIR=str(data_dir),
        DARKROOM_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    text = stderr.decode()
    assert "Traceback" not in text, text[-3000:]
    for secret in (TOKEN, SECRET, TOKEN.split(":")[1]):
        assert secret not in text
    return process.returncode, text.splitlines()


def assert_one_line(code: int, lines: list[str], *fragments: str) -> None:
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("darkroom: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


async def test_the_api_answers_invalid_json(fake_telegram, tmp_path):
    body = '{"ok":true,"result":{"id":%d,"username":"%s","first_name":"%s"' % (ALICE.id, ALICE.username, ALICE.first_name)
    fake_telegram.failures.append(Failure("getMe", "invalid_json", times=100, description=body))
    code, lines = await run_darkroom(fake_telegram, tmp_path, tmp_path / "data", DARKROOM_SECRET=SECRET)
    assert_one_line(code, lines, fake_telegram.url, "TELEGRAM_API_URL")
    assert ALICE.username not in lines[0] and str(ALICE.id) not in lines[0]


async def test_the_data_directory_cannot_be_created(fake_telegram, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    code, lines = await run_darkroom(fake_telegram, tmp_path, tmp_path / "a-file" / "data")
    assert_one_line(code, lines, "data directory", "DARKROOM_DATA_DIR")


async def test_the_data_directory_cannot_be_created_even_with_a_secret(fake_telegram, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    code, lines = await run_darkroom(fake_telegram, tmp_path, tmp_path / "a-file" / "data", DARKROOM_SECRET=SECRET)
    assert_one_line(code, lines, "data directory", "DARKROOM_DATA_DIR")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_the_data_directory_is_not_writable(fake_telegram, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o500)
    try:
        code, lines = await run_darkroom(fake_telegram, tmp_path, data_dir)
    finally:
        data_dir.chmod(0o700)
    assert_one_line(code, lines, "data directory")


@pytest.mark.parametrize(
    "content", [b"", b"short\n", b"z" * 64 + b"\n", os.urandom(64)], ids=["empty", "short", "not-hex", "binary"]
)
async def test_the_key_file_is_damaged(fake_telegram, tmp_path, content):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    key = data_dir / "secret.key"
    key.write_bytes(content)
    key.chmod(0o600)
    code, lines = await run_darkroom(fake_telegram, tmp_path, data_dir)
    assert_one_line(code, lines, str(key), "damaged")


@pytest.mark.parametrize("name", ["secret.key", "darkroom.sqlite3"])
async def test_a_world_readable_key_or_database_is_refused(fake_telegram, tmp_path, name):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "secret.key").write_bytes(os.urandom(32).hex().encode() + b"\n")
    (data_dir / "secret.key").chmod(0o600)
    (data_dir / "darkroom.sqlite3").write_bytes(b"")
    (data_dir / "darkroom.sqlite3").chmod(0o600)
    (data_dir / name).chmod(0o644)
    code, lines = await run_darkroom(fake_telegram, tmp_path, data_dir)
    assert_one_line(code, lines, str(data_dir / name), "chmod 600")


async def test_the_port_is_in_use(fake_telegram, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = await run_darkroom(
            fake_telegram, tmp_path, tmp_path / "data", DARKROOM_SECRET=SECRET, TELEGRAM_MODE="webhook",
            TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram", DARKROOM_HTTP_PORT=str(port),
        )
    assert_one_line(code, lines, f"127.0.0.1:{port}", "DARKROOM_HTTP_PORT")


async def test_the_data_directory_is_created_private_whatever_the_umask(fake_telegram, tmp_path):
    data_dir = tmp_path / "deep" / "data"
    old = os.umask(0)
    try:
        fake_telegram.failures.append(Failure("getMe", "invalid_json", times=100, description="{"))
        await run_darkroom(fake_telegram, tmp_path, data_dir)
    finally:
        os.umask(old)
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    assert ((data_dir / "secret.key").stat().st_mode & 0o777) == 0o600
