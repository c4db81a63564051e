"""`darkroom audit`: what the data directory holds, and whether anything is there that should not be.

The data directory may hold the SQLite database (with its WAL and shared-memory files) and the
pseudonym key, nothing else. The audit lists every file with its size, every table with its row
count and oldest record, and exits non-zero when it finds an unexpected file, an unexpected
table, a key file others can read, or anything in the database that looks like a picture.
"""

from __future__ import annotations

import sqlite3
import stat
import sys
import time
from pathlib import Path

from .storage import SCHEMA

DATABASE = "darkroom.sqlite3"
ALLOWED_FILES = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", "secret.key"}
TIME_COLUMNS = ("given_at", "changed_at", "started_at", "delete_at")
PICTURE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF")


def known_tables() -> set[str]:
    return {
        line.split("EXISTS", 1)[1].split("(")[0].strip()
        for line in SCHEMA.splitlines()
        if line.strip().startswith("CREATE TABLE")
    }


def audit(data_dir: Path, out=None) -> int:
    """Print the report; return the number of problems found."""
    out = out or sys.stdout
    problems: list[str] = []
    print(f"Data directory: {data_dir.resolve()}", file=out)
    if not data_dir.exists():
        print("  (does not exist: nothing is stored)", file=out)
        return 0
    print("\nFiles:", file=out)
    for path in sorted(p for p in data_dir.rglob("*")):
        relative = path.relative_to(data_dir)
        if path.is_dir():
            problems.append(f"unexpected directory {relative}")
            print(f"  {relative}/  UNEXPECTED", file=out)
            continue
        info = path.stat()
        mode = stat.S_IMODE(info.st_mode)
        flag = ""
        if str(relative) not in ALLOWED_FILES:
            problems.append(f"unexpected file {relative}")
            flag = "  UNEXPECTED"
        elif relative.name == "secret.key" and mode & 0o077:
            problems.append(f"{relative} is readable by others (mode {mode:o}); run chmod 600")
            flag = f"  MODE {mode:o} (should be 600)"
        print(f"  {relative}  {info.st_size} bytes  mode {mode:o}{flag}", file=out)

    database = data_dir / DATABASE
    if database.exists():
        print("\nTables:", file=out)
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            for table in tables:
                columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
                count = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                oldest = ""
                for column in TIME_COLUMNS:
                    if column in columns and count:
                        first = db.execute(f"SELECT MIN({column}) FROM {table}").fetchone()[0]
                        oldest = f", oldest {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(first))}"
                flag = ""
                if table not in known_tables():
                    problems.append(f"unexpected table {table}")
                    flag = "  UNEXPECTED"
                print(f"  {table}: {count} row(s){oldest}{flag}", file=out)
                for row in db.execute(f"SELECT * FROM {table}"):
                    for value in row:
                        if isinstance(value, bytes) and value.startswith(PICTURE_MAGIC):
                            problems.append(f"a value in {table} looks like a picture")
    print("", file=out)
    if problems:
        print("PROBLEMS:", file=out)
        for problem in problems:
            print(f"  - {problem}", file=out)
    else:
        print("OK: only the database and the key, and nothing in them that should not be there.", file=out)
    return len(problems)


def main(data_dir: Path | None = None) -> int:
    if data_dir is None:
        from .settings import SettingsError, from_environment

        try:
            data_dir = from_environment().data_dir
        except SettingsError as exc:
            print(f"darkroom: {exc}", file=sys.stderr)
            return 2
    return 1 if audit(data_dir) else 0
