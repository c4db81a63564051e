"""`darkroom audit`: what the data directory holds, and whether anything is there that should not be.

The data directory may hold the SQLite database (with its write-ahead log and shared-memory
index), the pseudonym key, the Content Credentials signing identity (a certificate chain and a
sealed key, bot/storage/credentials.py) and nothing else. The audit

- lists every file with its size and mode, and checks that each one is what its name says (a
  SQLite database, a write-ahead log, a shared-memory index, a rollback journal, a key of 64 hex
  digits, PEM certificates only, an encrypted private key), and that neither the directory nor any file is open to other users;
- compares the schema with the one this version of Darkroom creates (storage.SCHEMA applied to
  an in-memory database), so an extra table, column, index, trigger or view is reported;
- looks for picture signatures (JPEG, PNG, GIF, WebP, HEIF/AVIF, BMP, TIFF, JPEG XL, JPEG 2000)
  at any offset, raw or hex or base64 encoded, in every value, in the schema text, and in the raw
  bytes of every file, so deleted content that was never overwritten (free pages, free space
  inside pages, old WAL frames) is found too.

It never writes to, locks or opens the database through SQLite's file layer: it reads the bytes,
applies the committed WAL frames itself and looks at the result as an in-memory database, so a
foreign or damaged file is a finding in the report, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sqlite3
import stat
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.safeguards.pseudonym import KEY_FORMAT
from bot.settings import SettingsError, from_environment
from bot.storage import credentials
from bot.storage import store as storage
from inference.backends import KEPT_CHOICE_FILE

DATABASE = "darkroom.sqlite3"
WAL = f"{DATABASE}-wal"
SHM = f"{DATABASE}-shm"
JOURNAL = f"{DATABASE}-journal"
KEY = "secret.key"
CHOICE = KEPT_CHOICE_FILE  # the styling backend measured at start-up (inference/backends.py)
ALLOWED_FILES = {DATABASE, WAL, SHM, JOURNAL, KEY, CHOICE, credentials.CHAIN, credentials.KEY}
TIME_COLUMNS = ("given_at", "changed_at", "started_at", "delete_at")
# Every value Darkroom stores is small: pseudonyms, style keys, hashes, sealed chat addresses of a
# few hundred bytes. Anything bigger is something else (a picture has no business here at all).
MAX_VALUE_BYTES = 4096

SQLITE_MAGIC = b"SQLite format 3\x00"
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little- / big-endian words
SHM_VERSION = 3007000

# Signatures long enough not to turn up by chance in hashes, sealed blobs or page headers.
PICTURES = {
    "JPEG": rb"\xff\xd8\xff[\xc0-\xfe]",
    "PNG": rb"\x89PNG\r\n\x1a\n",
    "GIF": rb"GIF8[79]a",
    "WebP": rb"RIFF.{4}WEBP",
    "HEIF/AVIF": rb"ftyp(?:hei[cxms]|hev[cxms]|mif1|msf1|avi[fs])",
    "BMP": rb"BM.{4}\x00\x00\x00\x00.{4}[\x0c\x28\x34\x38\x40\x6c\x7c]\x00\x00\x00",
    "TIFF": rb"II\*\x00[\x08-\xff].{2}\x00|MM\x00\*\x00.{2}[\x08-\xff]",
    "JPEG XL": rb"\x00\x00\x00\x0cJXL \r\n\x87\n",  # the bare codestream marker is too short to trust
    "JPEG 2000": rb"\x00\x00\x00\x0cjP  \r\n\x87\n",
}
_PICTURE = re.compile(b"|".join(b"(?P<g%d>%s)" % (i, p) for i, p in enumerate(PICTURES.values())), re.DOTALL)
_KINDS = {f"g{i}": kind for i, kind in enumerate(PICTURES)}
# A literal every signature contains: a quick `in` test spares the regex on almost every value.
_ANCHORS = re.compile(rb"\xff\xd8\xff|\x89PNG|GIF8|WEBP|ftyp|BM|II\*\x00|MM\x00\*|\x00\x00\x00\x0c")
# Encoded runs shorter than these cannot hold even a tiny picture (a 1x1 GIF is 35 bytes); the
# limits keep the 32-digit pseudonyms from being decoded over and over.
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{40,}")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]{48,}")
_TO_STANDARD_BASE64 = bytes.maketrans(b"-_", b"+/")


@dataclass(frozen=True)
class Finding:
    kind: str  # "JPEG", ...
    encoding: str  # "" (raw), "hex" or "base64"
    offset: int  # in the scanned bytes

    def label(self) -> str:
        return f"{self.kind}, {self.encoding}" if self.encoding else self.kind


def find_pictures(data: bytes) -> list[Finding]:
    """Picture signatures in ``data`` at any offset: raw, hex, or (standard or URL-safe) base64."""
    found = [Finding(kind, "", offset) for kind, offset in _signatures(data)]
    for run in _HEX_RUN.finditer(data):
        text = run.group()
        for shift in (0, 1):
            chunk = text[shift:]
            decoded = binascii.unhexlify(chunk[: len(chunk) // 2 * 2])
            found += [Finding(kind, "hex", run.start()) for kind, _ in _signatures(decoded)]
    for run in _BASE64_RUN.finditer(data.translate(_TO_STANDARD_BASE64)):
        text = run.group()
        for shift in range(4):
            chunk = text[shift:]
            decoded = base64.b64decode(chunk[: len(chunk) // 4 * 4])
            found += [Finding(kind, "base64", run.start()) for kind, _ in _signatures(decoded)]
    return found


def _signatures(data: bytes) -> list[tuple[str, int]]:
    if _ANCHORS.search(data) is None:
        return []
    return [(_KINDS[m.lastgroup or ""], m.start()) for m in _PICTURE.finditer(data)]


def expected_schema() -> dict[tuple[str, str], str]:
    """(type, name) -> SQL of everything this version of Darkroom creates: storage.SCHEMA applied
    to an empty in-memory database, so tables added to storage.py are expected automatically."""
    with sqlite3.connect(":memory:") as db:
        db.executescript(storage.SCHEMA)
        return _schema(db)


def _schema(db: sqlite3.Connection) -> dict[tuple[str, str], str]:
    rows = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return {(kind, name): " ".join((sql or "").split()) for kind, name, sql in rows}


def _columns(db: sqlite3.Connection, table: str) -> list[tuple]:
    return [tuple(r[1:]) for r in db.execute(f'PRAGMA table_info("{table}")')]


@dataclass
class Report:
    out: TextIO
    problems: list[str] = field(default_factory=list)
    raw_hits: bool = False

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def problem(self, text: str) -> None:
        self.problems.append(text)


def audit(data_dir: Path, out=None) -> int:
    """Print the report; return the number of problems found. Never raises for what it finds."""
    report = Report(out or sys.stdout)
    try:
        _audit(data_dir, report)
    except Exception as exc:  # the verdict is a report, never a traceback
        report.problem(f"the audit could not finish ({type(exc).__name__}: {exc})")
    report.line("")
    if report.problems:
        report.line("PROBLEMS:")
        for problem in report.problems:
            report.line(f"  - {problem}")
        if report.raw_hits:
            report.line(
                "  Pictures found in the raw bytes of the database files are deleted content that was never "
                f"overwritten: stop the bot, then run `sqlite3 {data_dir / DATABASE} 'PRAGMA secure_delete=ON; VACUUM;'`."
            )
    else:
        report.line("OK: only the database and the keys, and nothing in them that should not be there.")
    return len(report.problems)


def _audit(data_dir: Path, report: Report) -> None:
    report.line(f"Data directory: {data_dir.resolve()}")
    if not data_dir.exists():
        report.line("  (does not exist: nothing is stored)")
        return
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        report.problem(f"the data directory is open to others (mode {mode:o}); run chmod 700 {data_dir}")
    report.line(f"  mode {mode:o}")
    report.line("\nFiles:")
    contents: dict[str, bytes] = {}
    def unreadable(error: OSError) -> None:
        report.problem(f"cannot read {error.filename} ({error.strerror}); run the audit as the bot's user or as root")

    for root, dirs, files in os.walk(data_dir, onerror=unreadable):
        for name in sorted(dirs + files):
            path = Path(root) / name
            relative = str(path.relative_to(data_dir))
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                report.problem(f"unexpected directory {relative}")
                report.line(f"  {relative}/  UNEXPECTED")
                continue
            if not stat.S_ISREG(info.st_mode) or relative not in ALLOWED_FILES:
                report.problem(f"unexpected file {relative}")
                report.line(f"  {relative}  {info.st_size} bytes  mode {mode:o}  UNEXPECTED")
                continue
            flag = ""
            if mode & 0o077:
                what = "readable" if mode & 0o044 else "writable"
                report.problem(f"{relative} is {what} by others (mode {mode:o}); run chmod 600 {path}")
                flag = f"  MODE {mode:o} (should be 600)"
            report.line(f"  {relative}  {info.st_size} bytes  mode {mode:o}{flag}")
            try:
                contents[relative] = path.read_bytes()
            except OSError as exc:
                report.problem(f"{relative} cannot be read ({exc.strerror})")
    _check_file_kinds(contents, report)
    database = _database_image(contents, report)
    free_pages: set[int] = set()
    found_live: set[tuple[str, str]] = set()
    if database is not None:
        free_pages = _free_pages(database)
        found_live = _check_database(database, report)
    _scan_raw_files(contents, free_pages, found_live, report)


def _check_file_kinds(contents: dict[str, bytes], report: Report) -> None:
    """Each allowed name must hold what it says, or a picture could hide behind it."""
    for problem in credentials.check_files(contents):
        report.problem(problem)
    key = contents.get(KEY)
    if key is not None and not KEY_FORMAT.fullmatch(key.strip()):
        report.problem(f"{KEY} is not a Darkroom key (expected 64 hexadecimal digits, found {len(key)} bytes of something else)")
    db = contents.get(DATABASE)
    if db and not db.startswith(SQLITE_MAGIC):
        report.problem(f"{DATABASE} is not a SQLite database")
    wal = contents.get(WAL)
    if wal and (len(wal) < 32 or struct.unpack(">I", wal[:4])[0] not in WAL_MAGIC):
        report.problem(f"{WAL} is not a SQLite write-ahead log")
    shm = contents.get(SHM)
    if shm and (len(shm) % 32768 or struct.unpack("=I", shm[:4])[0] != SHM_VERSION):
        report.problem(f"{SHM} is not a SQLite shared-memory index")
    choice = contents.get(CHOICE)
    if choice is not None and not _is_choice_record(choice):
        report.problem(f"{CHOICE} is not a Darkroom backend choice (delete it: the next start measures again)")
    journal = contents.get(JOURNAL)
    if journal and not (journal.startswith(JOURNAL_MAGIC) or journal[:28] == bytes(min(28, len(journal)))):
        report.problem(f"{JOURNAL} is not a SQLite rollback journal")


def _is_choice_record(data: bytes) -> bool:
    """Small JSON holding only the key, the choice and when it was measured."""
    if len(data) > MAX_VALUE_BYTES:
        return False
    try:
        record = json.loads(data)
    except ValueError:
        return False
    return isinstance(record, dict) and set(record) <= {"version", "key", "choice", "measured_at"}


def _database_image(contents: dict[str, bytes], report: Report) -> bytes | None:
    """The database as SQLite would see it: the main file with the WAL's committed frames applied."""
    db = contents.get(DATABASE, b"")
    if db and not db.startswith(SQLITE_MAGIC):
        return None
    wal = contents.get(WAL, b"")
    image = bytearray(db)
    if len(wal) >= 32 and struct.unpack(">I", wal[:4])[0] in WAL_MAGIC:
        try:
            page_size, pages, size = _committed_wal_frames(wal)
        except ValueError as exc:
            report.problem(f"{WAL} is damaged ({exc})")
        else:
            for number, page in pages.items():
                start = (number - 1) * page_size
                if len(image) < start + page_size:
                    image.extend(bytes(start + page_size - len(image)))
                image[start : start + page_size] = page
            if size:
                del image[size * page_size :]
    if not image:
        return None
    if not image.startswith(SQLITE_MAGIC):
        report.problem(f"{DATABASE} (with its write-ahead log) is not a SQLite database")
        return None
    image[18:20] = b"\x01\x01"  # read it as a plain (non-WAL) database image
    return bytes(image)


def _committed_wal_frames(wal: bytes) -> tuple[int, dict[int, bytes], int]:
    """(page size, {page number: newest committed content}, database size in pages after the
    last commit), checking salts and the running checksum as SQLite does."""
    magic, version, page_size, _, salt1, salt2, check1, check2 = struct.unpack(">8I", wal[:32])
    if version != 3007000 or page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise ValueError("bad header")
    order = "<" if magic == WAL_MAGIC[0] else ">"
    s0, s1 = _wal_checksum(wal[:24], 0, 0, order)
    if (s0, s1) != (check1, check2):
        raise ValueError("bad header checksum")
    pages: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    size = 0
    frame = 24 + page_size
    for start in range(32, len(wal) - frame + 1, frame):
        number, commit, f_salt1, f_salt2, f_check1, f_check2 = struct.unpack(">6I", wal[start : start + 24])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        page = wal[start + 24 : start + frame]
        s0, s1 = _wal_checksum(wal[start : start + 8], s0, s1, order)
        s0, s1 = _wal_checksum(page, s0, s1, order)
        if (s0, s1) != (f_check1, f_check2):
            break
        pending[number] = page
        if commit:
            pages.update(pending)
            pending.clear()
            size = commit
    return page_size, pages, size


def _wal_checksum(data: bytes, s0: int, s1: int, order: str) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _free_pages(image: bytes) -> set[int]:
    """Page numbers on the database's freelist (trunk and leaf pages)."""
    page_size = struct.unpack(">H", image[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages: set[int] = set()
    trunk = struct.unpack(">I", image[32:36])[0]
    total = len(image) // page_size
    while 0 < trunk <= total and trunk not in pages:
        pages.add(trunk)
        start = (trunk - 1) * page_size
        following, count = struct.unpack(">II", image[start : start + 8])
        count = min(count, page_size // 4 - 2)
        pages.update(struct.unpack(f">{count}I", image[start + 8 : start + 8 + 4 * count]))
        trunk = following
    return pages


def _check_database(image: bytes, report: Report) -> set[tuple[str, str]]:
    """Schema, row counts and every value; returns the (kind, encoding) of pictures found in
    live values, so the raw scan does not report the same ones twice."""
    found: set[tuple[str, str]] = set()
    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(image)
        db.execute("PRAGMA query_only=ON")
        actual = _schema(db)
    except sqlite3.Error as exc:
        report.problem(f"{DATABASE} cannot be read as a database ({exc})")
        db.close()
        return found
    try:
        expected = expected_schema()
        report.line("\nTables:")
        for (kind, name), sql in sorted(actual.items()):
            for finding in find_pictures(sql.encode()):
                found.add((finding.kind, finding.encoding))
                report.problem(f"the schema ({kind} {name}) looks like a picture ({finding.label()})")
                break
            if (kind, name) not in expected:
                report.problem(f"unexpected {kind} {name}")
            elif kind == "table" and sql != expected[(kind, name)]:
                known = {c[0] for c in _expected_columns(name)}
                extra = [c[0] for c in _columns(db, name) if c[0] not in known]
                for column in extra:
                    report.problem(f"unexpected column {name}.{column}")
                if not extra:
                    report.problem(f"table {name} differs from the schema this version creates")
            elif sql != expected[(kind, name)]:
                report.problem(f"{kind} {name} differs from the schema this version creates")
            if kind == "table":
                _report_table(db, name, (kind, name) in expected, report, found)
        freelist = db.execute("PRAGMA freelist_count").fetchone()[0]
        total = db.execute("PRAGMA page_count").fetchone()[0]
        report.line(f"  ({total} page(s), {freelist} of them free)")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            report.problem(f"{DATABASE} is damaged ({check})")
    except sqlite3.Error as exc:
        report.problem(f"{DATABASE} cannot be read as a database ({exc})")
    finally:
        db.close()
    return found


def _expected_columns(table: str) -> list[tuple]:
    with sqlite3.connect(":memory:") as db:
        db.executescript(storage.SCHEMA)
        return _columns(db, table)


def _report_table(db: sqlite3.Connection, table: str, known: bool, report: Report, found: set) -> None:
    columns = [c[0] for c in _columns(db, table)]
    count = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
    oldest = ""
    for column in TIME_COLUMNS:
        if column in columns and count:
            first = db.execute(f'SELECT MIN("{column}") FROM "{table}"').fetchone()[0]
            if isinstance(first, (int, float)):
                oldest = f", oldest {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(first))}"
    report.line(f"  {table}: {count} row(s){oldest}{'' if known else '  UNEXPECTED'}")
    reported: set[tuple[str, str, str]] = set()
    allowed = {c[0]: _storage_classes(c[1]) for c in _columns(db, table)}
    for number, row in enumerate(db.execute(f'SELECT * FROM "{table}"'), start=1):
        for column, value in zip(columns, row):
            if value is not None and not isinstance(value, allowed[column]) and (column, "type", "") not in reported:
                reported.add((column, "type", ""))
                report.problem(f"a value in {table}.{column} (row {number}) is a {type(value).__name__}, not what the column holds")
            size = len(value) if isinstance(value, (str, bytes)) else 0
            if size > MAX_VALUE_BYTES and (column, "size", "") not in reported:
                reported.add((column, "size", ""))
                report.problem(f"a value in {table}.{column} (row {number}) is {size} bytes long; Darkroom stores nothing that big")
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogatepass")
            if not isinstance(value, bytes):
                continue
            for finding in find_pictures(value):
                found.add((finding.kind, finding.encoding))
                key = (column, finding.kind, finding.encoding)
                if key not in reported:
                    reported.add(key)
                    report.problem(f"a value in {table}.{column} (row {number}) looks like a picture ({finding.label()})")


def _storage_classes(declared: str) -> tuple[type, ...]:
    """The Python types a column of this declared type holds when Darkroom writes it (SQLite's
    type affinity rules)."""
    declared = declared.upper()
    if "INT" in declared:
        return (int,)
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return (str,)
    if "BLOB" in declared or not declared:
        return (bytes,)
    return (int, float)


def _scan_raw_files(contents: dict[str, bytes], free_pages: set[int], found_live: set, report: Report) -> None:
    """Every byte of every allowed file, including deleted space: free pages, free space inside
    pages, old WAL frames. A picture already reported as a live value is not reported again."""
    page_size = 0
    database = contents.get(DATABASE, b"")
    if database.startswith(SQLITE_MAGIC):
        page_size = struct.unpack(">H", database[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
    for name in sorted(contents):
        reported: set[tuple[str, str]] = set()
        for finding in find_pictures(contents[name]):
            where = f"{name} at byte {finding.offset}"
            in_free_page = False
            if name == DATABASE and page_size:
                page = finding.offset // page_size + 1
                in_free_page = page in free_pages
                where += f" ({'free ' if in_free_page else ''}page {page})"
            key = (finding.kind, finding.encoding)
            if key in reported or (key in found_live and not in_free_page):
                continue
            reported.add(key)
            report.problem(f"{where} looks like a picture ({finding.label()})")
            if name in (DATABASE, WAL, JOURNAL):
                report.raw_hits = True


def main(data_dir: Path | None = None) -> int:
    if data_dir is None:
        try:
            data_dir = from_environment().data_dir
        except SettingsError as exc:
            print(f"darkroom: {exc}", file=sys.stderr)
            return 2
    return 1 if audit(data_dir) else 0
