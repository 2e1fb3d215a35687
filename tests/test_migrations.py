"""The schema's life cycle: created on an empty database, migrated only when allowed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from realtime.persistence.database import Database, SchemaError
from tests.backends import Backend


def migrate_command(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MENTEO_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "realtime.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _set_revision(url: str, revision: str) -> None:
    db = Database(url)
    async with db.write() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    await db.close()


async def test_empty_database_gets_the_schema_without_permission(backend: Backend) -> None:
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=False)
    assert db.epoch
    await db.close()
    again = Database(backend.database_url)
    await again.prepare(auto_migrate=False)
    assert again.epoch == db.epoch  # the epoch belongs to the database, not the process
    await again.close()


async def test_schema_other_than_the_codes_is_refused_naming_the_command(
    backend: Backend,
) -> None:
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=False)
    await db.close()
    await _set_revision(backend.database_url, "0000")  # as if written by older code
    stale = Database(backend.database_url)
    with pytest.raises(SchemaError, match="menteo-realtime migrate"):
        await stale.prepare(auto_migrate=False)
    await stale.close()


async def test_migrate_command_creates_and_is_idempotent(backend: Backend) -> None:
    for _ in range(2):
        result = migrate_command(backend.database_url)
        assert result.returncode == 0, result.stderr
        assert "schema is up to date" in result.stdout
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=False)
    await db.close()
