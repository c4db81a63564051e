"""The two databases Storage can run on, behind one small interface.

Storage (bot/storage/store.py) writes its SQL once, with `?` placeholders and syntax both engines
share (`INSERT ... ON CONFLICT`, `RETURNING`); each class here runs it on its engine:

- `SQLiteDatabase` (aiosqlite): one file in the data directory, one process. The default.
- `PostgresDatabase` (asyncpg, `pip install 'darkroom-bot[scale]'`): a server that several
  Darkroom processes can share. `?` becomes `$1, $2, ...`.

Every call is committed when it returns; `transaction()` groups calls that must happen together.
`purge()` is what each engine can do to make deleted rows unreadable on disk (see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiosqlite

from bot.settings import StartupError


class Statements(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        """Run one statement; its rows (e.g. of a SELECT or an INSERT ... RETURNING)."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; how many rows it inserted, changed or deleted."""
        ...


class Database(Statements, Protocol):
    engine: str  # "sqlite" or "postgresql"

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Statements]: ...

    async def insert_owned(self, sql: str, *args: Any) -> int:
        """Run an `INSERT ... RETURNING id`; the row is this process's until `release(id)` or
        until the process ends, whichever comes first."""
        ...

    async def claim(self, row: int) -> bool:
        """Take a row whose process has ended; False while a live process owns it (or another
        process has just claimed it)."""
        ...

    async def release(self, row: int) -> None: ...

    async def purge(self, tables: tuple[str, ...]) -> None: ...

    async def tables(self) -> list[str]: ...

    async def columns(self, table: str) -> list[str]: ...

    async def close(self) -> None: ...


class SQLiteDatabase:
    """One connection; a lock keeps one coroutine's statements from being committed by another's."""

    engine = "sqlite"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, schema: str) -> SQLiteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten with zeros
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(schema)
        await db.commit()
        return cls(db)

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        async with self.transaction() as statements:
            return await statements.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as statements:
            return await statements.execute(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Statements]:
        async with self._lock:
            try:
                yield _SQLiteStatements(self._db)
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    # One process per SQLite file: its rows are its own, and a row found at start-up was left by
    # a process that has ended.
    async def insert_owned(self, sql: str, *args: Any) -> int:
        [(row,)] = await self.fetch(sql, *args)
        return row

    async def claim(self, row: int) -> bool:
        return True

    async def release(self, row: int) -> None:
        pass

    async def purge(self, tables: tuple[str, ...]) -> None:
        """secure_delete has zeroed the deleted rows in the pages; fold the write-ahead log into
        the main file and truncate it, so they do not linger in the WAL either."""
        async with self._lock:
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def tables(self) -> list[str]:
        return sorted(row[0] for row in await self.fetch("SELECT name FROM sqlite_master WHERE type = 'table'"))

    async def columns(self, table: str) -> list[str]:
        return [row[1] for row in await self.fetch(f"PRAGMA table_info({table})")]

    async def close(self) -> None:
        try:
            await self.purge(())
        finally:
            await self._db.close()


class _SQLiteStatements:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        async with self._db.execute(sql, args) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._db.execute(sql, args) as cursor:
            return cursor.rowcount


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (our SQL has no `?` inside literals)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    """asyncpg returns the command tag ("INSERT 0 1", "DELETE 3"); its last word is the count."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def describe(url: str) -> str:
    """Where a database URL points, without user or password: `host:port/database`."""
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or '/'}"


class PostgresDatabase:
    """A connection pool; each call runs on whichever connection is free and commits at once."""

    engine = "postgresql"
    POOL_SIZE = 8
    CONNECT_TIMEOUT = 10.0

    def __init__(self, pool) -> None:
        self._pool = pool
        # Which rows this process owns is known to the server by the session advisory locks
        # held on this one connection: the server drops them when the process's connection ends,
        # however it ends. One statement at a time on it, hence the lock.
        self._owner = None
        self._owner_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, schema: str) -> PostgresDatabase:
        """Connect and create the tables if needed. Any failure is one StartupError naming the
        server (never the password) and the reason."""
        try:
            import asyncpg
        except ImportError:
            raise StartupError(
                "DARKROOM_DATABASE_URL needs the PostgreSQL driver: pip install 'darkroom-bot[scale]'"
            ) from None
        password = unquote(urlsplit(url).password or "")
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=cls.POOL_SIZE, timeout=cls.CONNECT_TIMEOUT, command_timeout=60
            )
        except (TimeoutError, OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = str(exc) or type(exc).__name__
            if password:
                reason = reason.replace(password, "[redacted]")
            raise StartupError(f"cannot connect to the PostgreSQL database at {describe(url)}: {reason}") from None
        try:
            async with pool.acquire() as connection, connection.transaction():
                # Several processes may start at once; CREATE ... IF NOT EXISTS is not safe
                # against itself, so they take turns.
                await connection.execute("SELECT pg_advisory_xact_lock(0, hashtext('darkroom schema'))")
                await connection.execute(schema)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            raise StartupError(
                f"cannot create Darkroom's tables in the PostgreSQL database at {describe(url)}: {exc}"
            ) from None
        return cls(pool)

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        return [tuple(row) for row in await self._pool.fetch(numbered(sql), *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._pool.execute(numbered(sql), *args))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Statements]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield _PostgresStatements(connection)

    # Row ownership: a session advisory lock keyed by the row's id (the single-key space; the
    # schema lock above uses the two-key space, which never overlaps it).

    async def _owner_connection(self):
        if self._owner is not None and self._owner.is_closed():  # lost, and its locks with it
            with contextlib.suppress(Exception):
                await self._pool.release(self._owner)
            self._owner = None
        if self._owner is None:
            self._owner = await self._pool.acquire()
        return self._owner

    async def insert_owned(self, sql: str, *args: Any) -> int:
        async with self._owner_lock:
            connection = await self._owner_connection()
            async with connection.transaction():  # locked before any other process can see the row
                row = await connection.fetchval(numbered(sql), *args)
                await connection.execute("SELECT pg_advisory_lock($1)", row)
            return row

    async def claim(self, row: int) -> bool:
        async with self._owner_lock:
            connection = await self._owner_connection()
            return await connection.fetchval("SELECT pg_try_advisory_lock($1)", row)

    async def release(self, row: int) -> None:
        async with self._owner_lock:
            if self._owner is None or self._owner.is_closed():
                return  # the server dropped the locks with the connection
            await self._owner.execute("SELECT pg_advisory_unlock($1)", row)

    async def purge(self, tables: tuple[str, ...]) -> None:
        """A DELETE leaves the old row versions in the table until VACUUM frees them; run it now
        for the tables just deleted from. VACUUM makes the space reusable but does not overwrite
        it, and the write-ahead log keeps its copy until the segment is recycled (README,
        "Scaling out")."""
        if tables:
            await self._pool.execute(f"VACUUM {', '.join(tables)}")

    async def tables(self) -> list[str]:
        rows = await self.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        return sorted(row[0] for row in rows)

    async def columns(self, table: str) -> list[str]:
        rows = await self.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            table,
        )
        return [row[0] for row in rows]

    async def close(self) -> None:
        if self._owner is not None:
            await self._pool.release(self._owner)  # resets the session: its locks are dropped
            self._owner = None
        await self._pool.close()


class _PostgresStatements:
    def __init__(self, connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        return [tuple(row) for row in await self._connection.fetch(numbered(sql), *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._connection.execute(numbered(sql), *args))
