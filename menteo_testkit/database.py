"""Empty PostgreSQL databases for tests, benchmarks and the soak."""

from __future__ import annotations

import asyncpg

# asyncpg's own default, kept where callers gave none.
CONNECT_TIMEOUT = 60.0


def plain_dsn(url: str) -> str:
    """asyncpg's spelling of a SQLAlchemy URL (``postgresql+asyncpg://`` -> ``postgresql://``)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def reset_schema(
    url: str, admin_url: str | None = None, timeout: float = CONNECT_TIMEOUT
) -> None:
    """Create the database of ``url`` if needed and empty it, so each run starts from nothing
    (the first server creates the schema).

    The whole ``public`` schema goes, not a list of tables: a table added by a newer migration
    would otherwise survive while ``alembic_version`` does not, and the next server would fail
    creating it ("relation ... already exists"). ``admin_url``: where to create it from
    (default the ``postgres`` database of the same server: a new machine has no bench
    database yet).
    """
    plain = plain_dsn(url)
    base, _, name = plain.rpartition("/")
    admin = await asyncpg.connect(admin_url or base + "/postgres", timeout=timeout)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(plain, timeout=timeout)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def recreate_database(admin_dsn: str, name: str) -> None:
    """Drop and create ``name`` (its tables are created by the first server to start); for
    the soak, whose database is its own. The shared ones are refused."""
    if name in ("test", "postgres") or name.startswith(("menteo_test", "menteo_bench")):
        raise ValueError(f"refusing to reset database {name!r}: others use it")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
