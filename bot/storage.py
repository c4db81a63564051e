"""SQLite storage (aiosqlite): consent records, preferences, group switches, and two kinds of
short-lived chat references. Nothing else.

Rows are keyed by pseudonym; no raw id, name, caption, file id or photo byte is ever written.
Where the bot must be able to reach a chat later (to delete its own reply after
DARKROOM_REPLY_TTL, or to say "please send it again" after a crash), the chat address is stored
sealed (AES-GCM under a key derived from the instance secret) and the row is deleted when used.
`secure_delete` makes SQLite overwrite deleted content, and every deletion checkpoints the WAL,
so an erased person cannot be read back from the file afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path

import aiosqlite
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from handlers.events import Address, MessageRef
from handlers.ports import ConsentRecord, Preferences

log = logging.getLogger("darkroom.storage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    person TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    language TEXT NOT NULL,
    given_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_history (
    person TEXT NOT NULL,
    version TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    language TEXT NOT NULL,
    given_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_history_person ON consent_history (person);
CREATE TABLE IF NOT EXISTS preferences (
    person TEXT PRIMARY KEY,
    style TEXT,
    strength REAL NOT NULL DEFAULT 1.0,
    keep_colours INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS groups (
    chat TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reply_refs (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL,
    sealed BLOB NOT NULL,
    delete_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reply_refs_due ON reply_refs (delete_at);
CREATE TABLE IF NOT EXISTS inflight (
    id INTEGER PRIMARY KEY,
    person TEXT NOT NULL,
    sealed BLOB NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks_seen (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS callbacks_seen_expiry ON callbacks_seen (expires_at);
"""

# Tables with a `person` column: /delete_my_data empties each of them for that person.
PERSON_TABLES = ("consents", "consent_history", "preferences", "reply_refs", "inflight")
# The replay guard of webhook callbacks: keyed hashes (HMAC under the instance key) of each
# callback's (timestamp, nonce) and message id, each row deleted once it expires (minutes). It
# belongs to no person and holds no identifier; it must outlive /delete_my_data, or a captured
# erasure request could be replayed.
REPLAY_TABLES = ("callbacks_seen",)
RECEIPT_NAMES = {
    "consents": "consent",
    "consent_history": "consent_history",
    "preferences": "preferences",
    "reply_refs": "reply_refs",
    "inflight": "inflight",
}


class Sealer:
    """Seals chat addresses (AES-GCM, key derived from the instance secret) so the database
    holds no raw chat id, even for the few rows that must be able to reach a chat."""

    def __init__(self, secret: bytes, label: bytes = b"darkroom:address-seal:v1") -> None:
        # Each use has its own label, so its own key (bot/workers.py seals broker messages).
        key = hmac.new(secret, label, hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, person: str, value: dict) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, json.dumps(value).encode(), person.encode())

    def open(self, person: str, sealed: bytes) -> dict:
        return json.loads(self._aead.decrypt(sealed[:12], sealed[12:], person.encode()))


class Storage:
    def __init__(self, db: aiosqlite.Connection, path: Path, sealer: Sealer) -> None:
        self._db = db
        self.path = path
        self._sealer = sealer

    @classmethod
    async def open(cls, path: Path, secret: bytes) -> "Storage":
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA secure_delete=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db, path, Sealer(secret))

    async def close(self) -> None:
        try:
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._db.commit()
        finally:
            await self._db.close()

    # -- consent ---------------------------------------------------------------------------

    async def consent(self, person: str) -> ConsentRecord | None:
        async with self._db.execute(
            "SELECT version, text_sha256, language, given_at FROM consents WHERE person = ?", (person,)
        ) as cursor:
            row = await cursor.fetchone()
        return ConsentRecord(*row) if row else None

    async def record_consent(self, person: str, record: ConsentRecord) -> None:
        values = (person, record.version, record.text_sha256, record.language, record.given_at)
        await self._db.execute(
            "INSERT INTO consents (person, version, text_sha256, language, given_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(person) DO UPDATE SET version=excluded.version, text_sha256=excluded.text_sha256, "
            "language=excluded.language, given_at=excluded.given_at",
            values,
        )
        await self._db.execute(
            "INSERT INTO consent_history (person, version, text_sha256, language, given_at) VALUES (?, ?, ?, ?, ?)",
            values,
        )
        await self._db.commit()

    async def consent_history(self, person: str) -> list[ConsentRecord]:
        async with self._db.execute(
            "SELECT version, text_sha256, language, given_at FROM consent_history WHERE person = ? ORDER BY given_at",
            (person,),
        ) as cursor:
            return [ConsentRecord(*row) async for row in cursor]

    # -- preferences -------------------------------------------------------------------------

    async def preferences(self, person: str) -> Preferences:
        async with self._db.execute(
            "SELECT style, strength, keep_colours FROM preferences WHERE person = ?", (person,)
        ) as cursor:
            row = await cursor.fetchone()
        return Preferences(row[0], float(row[1]), bool(row[2])) if row else Preferences()

    async def set_preferences(self, person: str, preferences: Preferences) -> None:
        await self._db.execute(
            "INSERT INTO preferences (person, style, strength, keep_colours) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(person) DO UPDATE SET style=excluded.style, strength=excluded.strength, "
            "keep_colours=excluded.keep_colours",
            (person, preferences.style, preferences.strength, int(preferences.keep_colours)),
        )
        await self._db.commit()

    # -- groups ----------------------------------------------------------------------------

    async def group_enabled(self, chat: str) -> bool:
        async with self._db.execute("SELECT enabled FROM groups WHERE chat = ?", (chat,)) as cursor:
            row = await cursor.fetchone()
        return True if row is None else bool(row[0])

    async def set_group_enabled(self, chat: str, enabled: bool) -> None:
        await self._db.execute(
            "INSERT INTO groups (chat, enabled, changed_at) VALUES (?, ?, ?) "
            "ON CONFLICT(chat) DO UPDATE SET enabled=excluded.enabled, changed_at=excluded.changed_at",
            (chat, int(enabled), int(time.time())),
        )
        await self._db.commit()

    async def delete_group(self, chat: str) -> int:
        cursor = await self._db.execute("DELETE FROM groups WHERE chat = ?", (chat,))
        await self._db.commit()
        await self._checkpoint()
        return cursor.rowcount

    # -- the bot's own replies, to delete later -------------------------------------------------

    async def remember_reply(self, person: str, message: MessageRef, delete_at: int) -> None:
        sealed = self._sealer.seal(person, {"p": message.chat.platform, "c": message.chat.value, "m": message.message_id})
        await self._db.execute(
            "INSERT INTO reply_refs (person, sealed, delete_at) VALUES (?, ?, ?)", (person, sealed, delete_at)
        )
        await self._db.commit()

    async def due_replies(self, now: int) -> list[tuple[int, MessageRef]]:
        async with self._db.execute(
            "SELECT id, person, sealed FROM reply_refs WHERE delete_at <= ? ORDER BY delete_at LIMIT 100", (now,)
        ) as cursor:
            rows = await cursor.fetchall()
        return self._open_refs(rows)

    async def replies_of(self, person: str) -> list[tuple[int, MessageRef]]:
        async with self._db.execute("SELECT id, person, sealed FROM reply_refs WHERE person = ?", (person,)) as cursor:
            rows = await cursor.fetchall()
        return self._open_refs(rows)

    def _open_refs(self, rows) -> list[tuple[int, MessageRef]]:
        refs = []
        for row_id, person, sealed in rows:
            try:
                value = self._sealer.open(person, sealed)
            except (InvalidTag, ValueError):
                log.warning("a reply reference could not be opened (was the secret changed?)")
                continue
            refs.append((row_id, MessageRef(Address(value["p"], value["c"]), value["m"])))
        return refs

    async def forget_reply(self, row: int) -> None:
        await self._db.execute("DELETE FROM reply_refs WHERE id = ?", (row,))
        await self._db.commit()

    # -- jobs in flight ------------------------------------------------------------------------

    async def job_started(self, person: str, chat: Address, language: str) -> int:
        sealed = self._sealer.seal(person, {"p": chat.platform, "c": chat.value, "l": language})
        cursor = await self._db.execute(
            "INSERT INTO inflight (person, sealed, started_at) VALUES (?, ?, ?)", (person, sealed, int(time.time()))
        )
        await self._db.commit()
        return cursor.lastrowid

    async def job_finished(self, row: int) -> None:
        await self._db.execute("DELETE FROM inflight WHERE id = ?", (row,))
        await self._db.commit()

    async def lost_jobs(self) -> list[tuple[int, Address, str]]:
        """Jobs that were running when the process died (their rows were never finished)."""
        async with self._db.execute("SELECT id, person, sealed FROM inflight ORDER BY id") as cursor:
            rows = await cursor.fetchall()
        lost = []
        for row_id, person, sealed in rows:
            try:
                value = self._sealer.open(person, sealed)
            except (InvalidTag, ValueError):
                await self.job_finished(row_id)
                continue
            lost.append((row_id, Address(value["p"], value["c"]), value["l"]))
        return lost

    # -- replay guard --------------------------------------------------------------------------

    async def first_sight(self, key: str, digest: str, expires_at: int, now: int | None = None) -> str | None:
        """Record ``key`` (a keyed hash) until ``expires_at``. None when it is new; otherwise the
        ``digest`` recorded when it was first seen. Expired keys are pruned first, so a key seen
        again after it expired counts as new."""
        now = int(time.time()) if now is None else now
        await self._db.execute("DELETE FROM callbacks_seen WHERE expires_at < ?", (now,))
        cursor = await self._db.execute(
            "INSERT INTO callbacks_seen (key, digest, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, digest, expires_at),
        )
        await self._db.commit()
        if cursor.rowcount == 1:
            return None
        async with self._db.execute("SELECT digest FROM callbacks_seen WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else ""  # expired meanwhile: matches no digest, so never "new"

    # -- erasure ---------------------------------------------------------------------------

    async def delete_person(self, person: str) -> dict[str, int]:
        removed: dict[str, int] = {}
        for table in PERSON_TABLES:
            cursor = await self._db.execute(f"DELETE FROM {table} WHERE person = ?", (person,))
            removed[RECEIPT_NAMES[table]] = cursor.rowcount
        await self._db.commit()
        await self._checkpoint()
        return removed

    async def _checkpoint(self) -> None:
        # Fold the WAL into the main file (where secure_delete has zeroed the rows) and truncate
        # it, so deleted rows do not linger in the write-ahead log either.
        await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- audit -----------------------------------------------------------------------------

    async def rows_of(self, person: str) -> int:
        """How many rows anywhere mention ``person`` (used to prove deletion)."""
        total = 0
        for table in await self.tables():
            columns = await self.columns(table)
            for column in columns:
                async with self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (person,)) as cursor:
                    total += (await cursor.fetchone())[0]
        return total

    async def tables(self) -> list[str]:
        async with self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") as cursor:
            return [row[0] async for row in cursor]

    async def columns(self, table: str) -> list[str]:
        async with self._db.execute(f"PRAGMA table_info({table})") as cursor:
            return [row[1] async for row in cursor]

    async def dump(self, replay_guard: bool = True) -> list[tuple]:
        """Every row of every table (tests scan it for identifiers); without the replay guard's
        rows when ``replay_guard`` is False (tests that prove a person's rows are all gone)."""
        rows: list[tuple] = []
        for table in await self.tables():
            if not replay_guard and table in REPLAY_TABLES:
                continue
            async with self._db.execute(f"SELECT * FROM {table}") as cursor:
                rows += [(table, *row) async for row in cursor]
        return rows
