"""Engines, transactions and the schema's life cycle (Alembic migrations)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import epoch as epochs
from .events import Appender
from .pg_append import PgAppender, connect_args
from .search_sqlite import SaSql
from .sqlite_append import SQLiteAppender

log = logging.getLogger("menteo.db")

MIGRATIONS = Path(__file__).with_name("migrations")
# PostgreSQL's read pool per process: opened as load asks, then kept. No overflow: one
# closes on its return whenever the pool is full, so a join storm opened and closed about
# one connection per ten joins (asyncpg's connect and PostgreSQL's fork each time).
READ_POOL, READ_OVERFLOW = 20, 0
# Of those, opened before /readyz passes: enough for the first welcomes of a rolling
# restart, few enough that many processes starting at once stay far from PostgreSQL's
# max_connections (100 by default).
WARM = 4
T = TypeVar("T")


class SchemaError(RuntimeError):
    """The database schema does not match the code and may not be migrated automatically."""


async def invalidate_if_closed(conn: AsyncConnection) -> None:
    """After a failure: a pooled connection PostgreSQL closed (a restart, a reset link) is
    not handed out again. SQLAlchemy notices a disconnect only in statements it ran itself;
    the batches that use asyncpg's connection directly (``pg_write``, the reducer batches)
    would otherwise get the dead connection back from the pool until it is recycled."""
    if conn.dialect.name != "postgresql" or conn.invalidated:
        return
    try:
        raw = await conn.get_raw_connection()
    except Exception:
        return
    driver = raw.driver_connection
    if driver is not None and getattr(driver, "is_closed", lambda: False)():
        await conn.invalidate()


class Database:
    """Two ways in: ``read()`` for queries, ``write()`` for a transaction that appends.

    On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` so that two processes
    never both read and then fail to upgrade to a write lock; readers use WAL snapshots.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.epoch = ""
        self.appender: Appender | None = None
        self.reader: Engine | None = None
        self.read_threads: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            # hide_parameters: a failed statement's values (message bodies, titles) never
            # reach an exception message, and so never a log line.
            args: dict[str, Any] = {"connect_args": {"timeout": 30}, "hide_parameters": True}
            self.engine = create_async_engine(url, **args)
            self.write_engine = create_async_engine(url, pool_size=1, max_overflow=0, **args)
            for engine, immediate in ((self.engine, False), (self.write_engine, True)):
                _sqlite_setup(engine, immediate=immediate)
            path = make_url(url).database
            if path and path != ":memory:":
                self.appender = SQLiteAppender(path)
                # Hot reads run as one call on a thread of their own (see ``run``).
                self.reader = create_engine(
                    f"sqlite:///{path}",
                    connect_args={"timeout": 30, "check_same_thread": False},
                    hide_parameters=True,
                )
                _sqlite_setup(self.reader, immediate=False)
                self.read_threads = ThreadPoolExecutor(2, thread_name_prefix="menteo-sqlite-read")
        else:
            # No pre-ping: it costs a round trip per transaction. A dropped connection fails
            # its batch once; SQLAlchemy then discards the pool and the writer retries.
            self.engine = create_async_engine(
                url,
                pool_size=READ_POOL,
                max_overflow=READ_OVERFLOW,
                pool_recycle=1800,
                hide_parameters=True,
            )
            # Writes get connections of their own: in a reconnect storm a thousand welcomes
            # queue for the read pool, and the group commit (every ack) must not queue
            # behind them.
            self.write_engine = create_async_engine(
                url, pool_size=4, max_overflow=4, pool_recycle=1800, hide_parameters=True
            )
            # Plain chat batches skip SQLAlchemy: one asyncpg connection of the appender's
            # own, beside the write pool (which reducer batches and the API still use).
            pg_args = connect_args(url)
            if pg_args is not None:
                self.appender = PgAppender(pg_args)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            try:
                yield conn
            except BaseException:
                await invalidate_if_closed(conn)
                raise

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """Reads that see one consistent state (a room's seq with its checklist)."""
        async with self.engine.connect() as conn:
            try:
                if not self.is_sqlite:  # SQLite's WAL read transaction is a snapshot already
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                yield conn
            except BaseException:
                await invalidate_if_closed(conn)
                raise

    async def run(self, fn: Callable[..., T], *args: Any, snapshot: bool = False) -> T:
        """Run ``fn(connection, *args)``, a function of sync reads, in one go.

        On SQLite that is one hop to a reader thread instead of a hop per statement through
        aiosqlite; on PostgreSQL it runs on the async connection (greenlet-adapted). With
        ``snapshot`` every read sees the same state (REPEATABLE READ on PostgreSQL; a WAL
        read transaction on SQLite is one snapshot already).
        """
        if self.reader is not None and self.read_threads is not None:
            reader = self.reader

            def call() -> T:
                with reader.connect() as conn:
                    return fn(conn, *args)

            return await asyncio.get_running_loop().run_in_executor(self.read_threads, call)
        if snapshot:
            async with self.snapshot() as conn:
                return await conn.run_sync(fn, *args)
        async with self.read() as conn:
            if not self.is_sqlite:  # (an in-memory SQLite keeps the BEGIN that is ours)
                # Outside a transaction: under READ COMMITTED each statement saw a state of
                # its own anyway, and BEGIN and ROLLBACK were two more round trips per call
                # (a join runs two such calls; a reconnect storm, thousands).
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(fn, *args)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.write_engine.begin() as conn:
            try:
                yield conn
            except BaseException:
                await invalidate_if_closed(conn)
                raise

    async def write_sqlite(self, fn: Callable[..., T], *args: Any) -> T:
        """SQLite: ``fn(sql, *args)`` in a write transaction, ``sql`` a ``sqlite3``-like
        connection (``execute``). On the appender's thread when there is one, so it takes
        turns with the appends instead of waiting for the lock."""
        if isinstance(self.appender, SQLiteAppender):
            return await self.appender.run(fn, *args)
        async with self.write() as conn:
            return await conn.run_sync(lambda sync: fn(SaSql(sync), *args))

    @asynccontextmanager
    async def pg_write(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL: asyncpg's connection of a write-pool connection, in a transaction."""
        async with self.write() as conn:
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            try:
                async with driver.transaction():
                    yield driver
            except asyncio.CancelledError:
                await conn.invalidate()  # cancelled mid-statement: not for reuse
                raise

    @asynccontextmanager
    async def pg_read(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL: asyncpg's connection of a read-pool connection (no transaction)."""
        async with self.read() as conn:
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            yield driver

    async def erase_wal(self) -> None:
        """SQLite: checkpoint the WAL into the file and truncate it (it still holds the
        pages a delete replaced). Logged, not raised, when a reader kept it busy."""
        if not isinstance(self.appender, SQLiteAppender):
            return  # PostgreSQL, or a database without a file
        busy, frames, done = await self.appender.erase_wal()
        if busy or frames != done:
            log.warning("the WAL could not be truncated after a delete (a reader held it)")

    async def warm(self) -> None:
        """PostgreSQL: open ``WARM`` of the read pool's kept connections before the process
        says it is ready. A process started in a rolling restart takes the other one's
        sockets at once, and a connection opened then (TCP, authentication, the driver's
        setup queries) is a wait in front of every welcome queued for it. Best effort: a
        failure is logged and the pool opens them on demand, as before."""
        if self.is_sqlite:
            return
        opened = await asyncio.gather(
            *(self.engine.connect().start() for _ in range(WARM)), return_exceptions=True
        )
        failed = [c for c in opened if isinstance(c, BaseException)]
        for conn in opened:
            if isinstance(conn, AsyncConnection):
                await conn.close()  # back to the pool, which keeps it
        if failed:
            log.warning("the read pool could not be warmed: %r", failed[0])

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        if self.appender is not None:
            await self.appender.close()
        if self.read_threads is not None and self.reader is not None:
            self.read_threads.shutdown(wait=True)
            self.reader.dispose()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()

    async def prepare(self, *, auto_migrate: bool) -> None:
        """Create the schema on an empty database, migrate an old one if allowed, settle the
        epoch: one transaction under the schema lock, so N processes starting at once on one
        database take turns (the first creates or migrates, the others find it done) and
        all serve one epoch."""
        async with self.write_engine.connect() as conn:
            await conn.run_sync(epochs.lock_schema)
            current = await conn.run_sync(_current_revision)
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            if current is None:
                log.info("empty database: creating the schema")
                await conn.run_sync(_upgrade)
            elif current != head:
                if not auto_migrate:
                    raise SchemaError(
                        f"the database schema is at revision {current}, the code needs {head}: "
                        "run `menteo-realtime migrate` (or set MENTEO_AUTO_MIGRATE=1)"
                    )
                log.info("migrating the database schema from %s to %s", current, head)
                await conn.run_sync(_upgrade)
            self.epoch = await conn.run_sync(epochs.settle)
            await conn.commit()

    async def migrate(self) -> None:
        async with self.write_engine.connect() as conn:
            await conn.run_sync(epochs.lock_schema)
            await conn.run_sync(_upgrade)
            await conn.commit()

    async def new_epoch(self) -> tuple[str | None, str]:
        """A new epoch for the database (``menteo-realtime new-epoch``): ``(old, new)``."""
        async with self.write_engine.connect() as conn:
            await conn.run_sync(epochs.lock_schema)
            renewed = await conn.run_sync(epochs.renew)
            await conn.commit()
        return renewed

    async def keep(self, key: str, value: str) -> str:
        """The value stored under ``key`` in the Meta table; ``value`` is stored first when
        there is none. Two processes starting together on one database agree on it."""
        async with self.write() as conn:
            return await conn.run_sync(epochs.keep, key, value)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection) -> None:
    command.upgrade(alembic_config(conn), "head")


def _sqlite_setup(engine: AsyncEngine | Engine, *, immediate: bool) -> None:
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to issue.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an acked event survives power loss too
        cur.execute("PRAGMA foreign_keys=ON")
        # Freed bytes are zeroed: an erased chat message leaves nothing in the file.
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(sync, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def unavailable(exc: BaseException) -> bool:
    """The database could not serve a request (down, or every connection busy past the
    pool's timeout): the caller may try again later; nothing is wrong with the request."""
    return isinstance(exc, (SQLAlchemyError, OSError, TimeoutError))


# SQLSTATE classes of a database that cannot serve now: connection exception (08),
# insufficient resources (53: too many connections), operator intervention (57: shutting
# down, cannot connect now); and 55000 as PostgreSQL answers a connection to a database
# that does not accept connections.
_UNAVAILABLE_STATES = ("08", "53", "57", "55000")


def cannot_serve(exc: BaseException) -> bool:
    """Narrower than ``unavailable``: the database (not the request) is at fault, as a
    REST answer must tell (503, try again) from a statement it refused (500)."""
    if isinstance(exc, OSError | PoolTimeout | InterfaceError | OperationalError):
        return True
    if isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", "") or "")
        return exc.connection_invalidated or state.startswith(_UNAVAILABLE_STATES)
    return False
