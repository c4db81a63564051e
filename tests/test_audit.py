"""`darkroom audit` reports what the data directory holds and fails on anything unexpected."""

from __future__ import annotations

import os

from bot.cli import main
from bot.pseudonym import load_or_create_secret
from bot.storage import Storage
from handlers.ports import ConsentRecord


async def make_data_dir(path):
    secret = load_or_create_secret(path / "secret.key")
    storage = await Storage.open(path / "darkroom.sqlite3", secret)
    await storage.record_consent("p1", ConsentRecord("v1", "0" * 64, "en", 1_700_000_000))
    await storage.close()


async def test_clean_data_dir_passes_with_report(tmp_path, capsys):
    await make_data_dir(tmp_path)
    assert main(["audit", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "consents: 1 row(s), oldest 2023-11-14" in out
    assert "secret.key" in out and "mode 600" in out
    assert "OK:" in out


async def test_an_unexpected_file_fails_the_audit(tmp_path, capsys):
    await make_data_dir(tmp_path)
    (tmp_path / "selfie.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    assert main(["audit", "--data-dir", str(tmp_path)]) == 1
    assert "unexpected file selfie.jpg" in capsys.readouterr().out


async def test_a_readable_key_fails_the_audit(tmp_path, capsys):
    await make_data_dir(tmp_path)
    os.chmod(tmp_path / "secret.key", 0o644)
    assert main(["audit", "--data-dir", str(tmp_path)]) == 1
    assert "readable by others" in capsys.readouterr().out


async def test_a_picture_in_the_database_fails_the_audit(tmp_path, capsys):
    await make_data_dir(tmp_path)
    import sqlite3

    with sqlite3.connect(tmp_path / "darkroom.sqlite3") as db:
        db.execute("CREATE TABLE photos (data BLOB)")
        db.execute("INSERT INTO photos VALUES (?)", (b"\xff\xd8\xff\xe0JFIF",))
    assert main(["audit", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "unexpected table photos" in out and "looks like a picture" in out


def test_missing_data_dir_means_nothing_stored(tmp_path, capsys):
    assert main(["audit", "--data-dir", str(tmp_path / "none")]) == 0
    assert "nothing is stored" in capsys.readouterr().out
