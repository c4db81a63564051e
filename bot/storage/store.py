"""Storage: consent records, preferences, group switches, two kinds of short-lived chat references
and the WeChat replay guard. Nothing else. On SQLite (the default, one file in the data directory)
or PostgreSQL (DARKROOM_DATABASE_URL, for several processes); the queries below are the same for
both, bot/storage/database.py runs them.

Rows are keyed by pseudonym; no raw id, name, caption, file id or photo byte is ever written.
Where the bot must be able to reach a chat later (to delete its own reply after
DARKROOM_REPLY_TTL, or to say "please send it again" after a crash), the chat address is stored
sealed (AES-GCM under a key derived from the instance secret) and the row is deleted when used.
On SQLite, `secure_delete` overwrites deleted content and every erasure checkpoints the WAL, so an
erased person cannot be read back from the file afterwards. On PostgreSQL every erasure is
followed by a VACUUM of the tables it touched; what that does and does not guarantee is in the
README ("Scaling out").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.storage.database import Database, PostgresDatabase, SQLiteDatabase
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

# The same tables, columns (in the same order) and indexes on PostgreSQL. Its types are stricter:
# times are BIGINT (unix seconds outlive a 32-bit INTEGER), strength is a double like SQLite's
# REAL, flags stay 0/1 integers so both engines return the same rows.
POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    person TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    language TEXT NOT NULL,
    given_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_history (
    person TEXT NOT NULL,
    version TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    language TEXT NOT NULL,
    given_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_history_person ON consent_history (person);
CREATE TABLE IF NOT EXISTS preferences (
    person TEXT PRIMARY KEY,
    style TEXT,
    strength DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    keep_colours INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS groups (
    chat TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS reply_refs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    delete_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS reply_refs_due ON reply_refs (delete_at);
CREATE TABLE IF NOT EXISTS inflight (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    started_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks_seen (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    expires_at BIGINT NOT NULL
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
        # Each use has its own label, so its own key (bot/scale/ seals broker messages).
        key = hmac.new(secret, label, hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, person: str, value: dict) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, json.dumps(value).encode(), person.encode())

    def open(self, person: str, sealed: bytes) -> dict:
        return json.loads(self._aead.decrypt(sealed[:12], sealed[12:], person.encode()))


class Storage:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    @property
    def engine(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._db.engine

    @classmethod
    async def open(cls, path: Path, secret: bytes) -> Storage:
        """The SQLite file at ``path`` (created with mode 0600)."""
        return cls(await SQLiteDatabase.open(path, SCHEMA), Sealer(secret))

    @classmethod
    async def open_postgres(cls, url: str, secret: bytes) -> Storage:
        """The PostgreSQL database at ``url``; raises StartupError when it cannot be used."""
        return cls(await PostgresDatabase.open(url, POSTGRES_SCHEMA), Sealer(secret))

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        """Raises when the database does not answer (GET /readyz)."""
        await self._db.fetch("SELECT 1")

    # -- consent ---------------------------------------------------------------------------

    async def consent(self, person: str) -> ConsentRecord | None:
        rows = await self._db.fetch(
            "SELECT version, text_sha256, language, given_at FROM consents WHERE person = ?", person
        )
        return ConsentRecord(*rows[0]) if rows else None

    async def record_consent(self, person: str, record: ConsentRecord) -> None:
        values = (person, record.version, record.text_sha256, record.language, record.given_at)
        async with self._db.transaction() as db:
            await db.execute(
                "INSERT INTO consents (person, version, text_sha256, language, given_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(person) DO UPDATE SET version=excluded.version, text_sha256=excluded.text_sha256, "
                "language=excluded.language, given_at=excluded.given_at",
                *values,
            )
            await db.execute(
                "INSERT INTO consent_history (person, version, text_sha256, language, given_at) VALUES (?, ?, ?, ?, ?)",
                *values,
            )

    async def consent_history(self, person: str) -> list[ConsentRecord]:
        rows = await self._db.fetch(
            "SELECT version, text_sha256, language, given_at FROM consent_history WHERE person = ? ORDER BY given_at",
            person,
        )
        return [ConsentRecord(*row) for row in rows]

    # -- preferences -------------------------------------------------------------------------

    async def preferences(self, person: str) -> Preferences:
        rows = await self._db.fetch("SELECT style, strength, keep_colours FROM preferences WHERE person = ?", person)
        if not rows:
            return Preferences()
        style, strength, keep_colours = rows[0]
        return Preferences(style, float(strength), bool(keep_colours))

    async def set_preferences(self, person: str, preferences: Preferences) -> None:
        await self._db.execute(
            "INSERT INTO preferences (person, style, strength, keep_colours) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(person) DO UPDATE SET style=excluded.style, strength=excluded.strength, "
            "keep_colours=excluded.keep_colours",
            person, preferences.style, float(preferences.strength), int(preferences.keep_colours),
        )

    # -- groups ----------------------------------------------------------------------------

    async def group_enabled(self, chat: str) -> bool:
        rows = await self._db.fetch("SELECT enabled FROM groups WHERE chat = ?", chat)
        return True if not rows else bool(rows[0][0])

    async def set_group_enabled(self, chat: str, enabled: bool) -> None:
        await self._db.execute(
            "INSERT INTO groups (chat, enabled, changed_at) VALUES (?, ?, ?) "
            "ON CONFLICT(chat) DO UPDATE SET enabled=excluded.enabled, changed_at=excluded.changed_at",
            chat, int(enabled), int(time.time()),
        )

    async def delete_group(self, chat: str) -> int:
        removed = await self._db.execute("DELETE FROM groups WHERE chat = ?", chat)
        await self._db.purge(("groups",))
        return removed

    # -- the bot's own replies, to delete later -------------------------------------------------

    async def remember_reply(self, person: str, message: MessageRef, delete_at: int) -> None:
        sealed = self._sealer.seal(person, {"p": message.chat.platform, "c": message.chat.value, "m": message.message_id})
        await self._db.execute(
            "INSERT INTO reply_refs (person, sealed, delete_at) VALUES (?, ?, ?)", person, sealed, int(delete_at)
        )

    async def due_replies(self, now: int) -> list[tuple[int, MessageRef]]:
        rows = await self._db.fetch(
            "SELECT id, person, sealed FROM reply_refs WHERE delete_at <= ? ORDER BY delete_at LIMIT 100", int(now)
        )
        return self._open_refs(rows)

    async def replies_of(self, person: str) -> list[tuple[int, MessageRef]]:
        rows = await self._db.fetch("SELECT id, person, sealed FROM reply_refs WHERE person = ? ORDER BY id", person)
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
        await self._db.execute("DELETE FROM reply_refs WHERE id = ?", row)

    # -- jobs in flight ------------------------------------------------------------------------

    async def job_started(self, person: str, chat: Address, language: str) -> int:
        sealed = self._sealer.seal(person, {"p": chat.platform, "c": chat.value, "l": language})
        return await self._db.insert_owned(
            "INSERT INTO inflight (person, sealed, started_at) VALUES (?, ?, ?) RETURNING id",
            person, sealed, int(time.time()),
        )

    async def job_finished(self, row: int) -> None:
        await self._db.execute("DELETE FROM inflight WHERE id = ?", row)
        await self._db.release(row)

    async def lost_jobs(self) -> list[tuple[int, Address, str]]:
        """Jobs that were running when their process died (their rows were never finished). On
        PostgreSQL, jobs that other live processes are running right now are not lost; each lost
        one is claimed, so that of two processes starting together only one reports it."""
        rows = await self._db.fetch("SELECT id, person, sealed FROM inflight ORDER BY id")
        lost = []
        for row_id, person, sealed in rows:
            if not await self._db.claim(row_id):
                continue
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
        again after it expired counts as new. The primary key makes this atomic between
        processes sharing a PostgreSQL database: exactly one of them sees a key as new."""
        now = int(time.time()) if now is None else int(now)
        await self._db.execute("DELETE FROM callbacks_seen WHERE expires_at < ?", now)
        inserted = await self._db.execute(
            "INSERT INTO callbacks_seen (key, digest, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING",
            key, digest, int(expires_at),
        )
        if inserted == 1:
            return None
        rows = await self._db.fetch("SELECT digest FROM callbacks_seen WHERE key = ?", key)
        return rows[0][0] if rows else ""  # expired meanwhile: matches no digest, so never "new"

    # -- erasure ---------------------------------------------------------------------------

    async def delete_person(self, person: str) -> dict[str, int]:
        removed: dict[str, int] = {}
        async with self._db.transaction() as db:
            for table in PERSON_TABLES:
                removed[RECEIPT_NAMES[table]] = await db.execute(f"DELETE FROM {table} WHERE person = ?", person)
        await self._db.purge(PERSON_TABLES)
        return removed

    # -- audit -----------------------------------------------------------------------------

    async def rows_of(self, person: str) -> int:
        """How many rows anywhere mention ``person`` in any column (used to prove deletion)."""
        total = 0
        for table in await self.tables():
            for column in await self.columns(table):
                [(count,)] = await self._db.fetch(f"SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) = ?", person)
                total += count
        return total

    async def tables(self) -> list[str]:
        return await self._db.tables()

    async def columns(self, table: str) -> list[str]:
        return await self._db.columns(table)

    async def dump(self, replay_guard: bool = True) -> list[tuple]:
        """Every row of every table, in a stable order (tests scan it for identifiers); without
        the replay guard's rows when ``replay_guard`` is False (tests that prove a person's rows
        are all gone)."""
        rows: list[tuple] = []
        for table in await self.tables():
            if not replay_guard and table in REPLAY_TABLES:
                continue
            order = ", ".join(str(i) for i in range(1, len(await self.columns(table)) + 1))
            rows += [(table, *row) for row in await self._db.fetch(f"SELECT * FROM {table} ORDER BY {order}")]
        return rows
