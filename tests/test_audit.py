"""`darkroom audit` reports what the data directory holds and fails on anything unexpected."""

from __future__ import annotations

import base64
import io
import os
import sqlite3

import pytest
from PIL import Image

from bot.cli import main
from bot.safeguards.pseudonym import load_or_create_secret
from bot.storage.store import Storage
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
    with sqlite3.connect(tmp_path / "darkroom.sqlite3") as db:
        db.execute("CREATE TABLE photos (data BLOB)")
        db.execute("INSERT INTO photos VALUES (?)", (b"\xff\xd8\xff\xe0JFIF",))
    assert main(["audit", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "unexpected table photos" in out and "looks like a picture" in out


def test_missing_data_dir_means_nothing_stored(tmp_path, capsys):
    assert main(["audit", "--data-dir", str(tmp_path / "none")]) == 0
    assert "nothing is stored" in capsys.readouterr().out


# -- hidden pictures: each of these once passed the audit -------------------------------------


def a_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def a_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 240)).save(out, "PNG")
    return out.getvalue()


def run_audit(path, capsys) -> tuple[int, str]:
    code = main(["audit", "--data-dir", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def database(path) -> sqlite3.Connection:
    db = sqlite3.connect(path / "darkroom.sqlite3", isolation_level=None)
    db.execute("PRAGMA secure_delete=OFF")
    return db


async def test_a_base64_jpeg_in_a_text_column_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (base64.b64encode(a_jpeg()).decode(),))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "preferences.style" in out and "looks like a picture (JPEG, base64)" in out


async def test_a_urlsafe_base64_png_at_an_odd_offset_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        hidden = "x" + base64.urlsafe_b64encode(b"ab" + a_png()).decode().rstrip("=")
        db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (hidden,))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "looks like a picture (PNG, base64)" in out


async def test_a_jpeg_after_one_leading_byte_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (b"\x00" + a_jpeg(),))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "preferences.style" in out and "looks like a picture (JPEG)" in out


@pytest.mark.parametrize("kind", ["webp", "heic", "bmp", "tiff", "gif"])
async def test_other_picture_formats_fail(tmp_path, capsys, kind):
    await make_data_dir(tmp_path)
    out_buffer = io.BytesIO()
    picture = Image.new("RGB", (32, 32), (1, 2, 3))
    if kind == "heic":
        data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    else:
        picture.save(out_buffer, kind.upper())
        data = out_buffer.getvalue()
    with database(tmp_path) as db:
        db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (b"junk" + data,))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "looks like a picture" in out


async def test_raw_pixels_in_a_new_column_fail(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        db.execute("ALTER TABLE preferences ADD COLUMN pixels BLOB")
        db.execute("INSERT INTO preferences (person, pixels) VALUES ('p1', ?)", (bytes(range(256)) * 40,))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "unexpected column preferences.pixels" in out


async def test_unknown_views_and_indexes_fail(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        db.execute("CREATE VIEW everyone AS SELECT person FROM consents")
        db.execute("CREATE INDEX by_style ON preferences (style)")
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "unexpected view everyone" in out and "unexpected index by_style" in out


async def test_a_jpeg_inside_a_trigger_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        db.execute(
            f"CREATE TRIGGER keep AFTER INSERT ON consents BEGIN SELECT X'{a_jpeg().hex()}'; END"
        )
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "unexpected trigger keep" in out and "looks like a picture (JPEG, hex)" in out


async def test_a_jpeg_in_free_pages_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    with database(tmp_path) as db:
        db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (a_jpeg() * 3,))
        db.execute("DELETE FROM preferences")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert db.execute("SELECT COUNT(*) FROM preferences").fetchone()[0] == 0
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "darkroom.sqlite3 at byte" in out and "looks like a picture (JPEG)" in out
    assert "VACUUM" in out


async def test_a_jpeg_in_the_write_ahead_log_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    db = database(tmp_path)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (a_jpeg(),))
    db.execute("DELETE FROM preferences")
    try:
        code, out = run_audit(tmp_path, capsys)
    finally:
        db.close()
    assert code == 1 and "darkroom.sqlite3-wal at byte" in out


async def test_a_live_row_in_the_wal_is_counted(tmp_path, capsys):
    await make_data_dir(tmp_path)
    db = database(tmp_path)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("INSERT INTO groups (chat, enabled, changed_at) VALUES ('c1', 1, 1700000000)")
    try:
        code, out = run_audit(tmp_path, capsys)
    finally:
        db.close()
    assert code == 0 and "groups: 1 row(s)" in out, out


@pytest.mark.parametrize("name", ["darkroom.sqlite3-wal", "secret.key", "darkroom.sqlite3-shm", "darkroom.sqlite3"])
async def test_a_jpeg_wearing_an_allowed_name_fails(tmp_path, capsys, name):
    await make_data_dir(tmp_path)
    target = tmp_path / name
    target.write_bytes(a_jpeg())
    os.chmod(target, 0o600)
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and f"{name} is not" in out and "looks like a picture (JPEG)" in out


async def test_a_foreign_journal_is_reported_not_a_crash(tmp_path, capsys):
    await make_data_dir(tmp_path)
    journal = tmp_path / "darkroom.sqlite3-journal"
    journal.write_bytes(b"this is not a journal at all" * 100)
    os.chmod(journal, 0o600)
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "darkroom.sqlite3-journal is not a SQLite rollback journal" in out
    assert "consents: 1 row(s)" in out


async def test_open_modes_fail(tmp_path, capsys):
    await make_data_dir(tmp_path)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "darkroom.sqlite3", 0o644)
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "the data directory is open to others (mode 755)" in out
    assert "darkroom.sqlite3 is readable by others" in out


async def test_a_damaged_key_fails(tmp_path, capsys):
    await make_data_dir(tmp_path)
    (tmp_path / "secret.key").write_bytes(b"short\n")
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "secret.key is not a Darkroom key" in out


async def test_the_expected_schema_is_storage_own(tmp_path, capsys, monkeypatch):
    from bot.storage import store as storage

    monkeypatch.setattr(storage, "SCHEMA", storage.SCHEMA + "CREATE TABLE IF NOT EXISTS seen_nonces (nonce TEXT PRIMARY KEY, at INTEGER NOT NULL);\n")
    await make_data_dir(tmp_path)
    code, out = run_audit(tmp_path, capsys)
    assert code == 0 and "seen_nonces: 0 row(s)" in out, out
    monkeypatch.undo()
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "unexpected table seen_nonces" in out


async def test_garbage_in_place_of_the_database_is_one_clear_report(tmp_path, capsys):
    await make_data_dir(tmp_path)
    (tmp_path / "darkroom.sqlite3").write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1 and "PROBLEMS:" in out


async def test_raw_pixels_in_an_expected_column_fail(tmp_path, capsys):
    await make_data_dir(tmp_path)
    pixels = Image.new("RGB", (40, 40), (9, 99, 199)).tobytes()
    with database(tmp_path) as db:
        db.execute("INSERT INTO preferences (person, style) VALUES ('p1', ?)", (pixels,))
        db.execute("INSERT INTO groups (chat, enabled, changed_at) VALUES ('c1', 1, ?)", ("x" * 5000,))
    code, out = run_audit(tmp_path, capsys)
    assert code == 1
    assert "preferences.style (row 1) is a bytes, not what the column holds" in out
    assert "preferences.style (row 1) is 4800 bytes long" in out
    assert "groups.changed_at (row 1) is a str" in out and "5000 bytes long" in out
