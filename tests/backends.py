"""The backends the suite runs on: SQLite + in-process broker, PostgreSQL + Redis.

Without PostgreSQL or Redis their tests skip with the reason; on CI (any truthy CI)
a missing service fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from menteo_testkit.database import reset_schema
from tests.ci import skip_or_fail

PG_ADMIN = os.environ.get("MENTEO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
# Under pytest-xdist ("gw0", "gw1"...) each worker has its own database, and its own Redis
# (conftest.py's worker_redis): pub/sub channels are global to a Redis server, so two workers'
# servers would otherwise hear each other's revocations and inbox events.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PG_DB = os.environ.get("MENTEO_TEST_PG_DB", "menteo_test") + (f"_{WORKER}" if WORKER else "")
REDIS_URL = os.environ.get("MENTEO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str = ""


def _unavailable(service: str, exc: Exception) -> None:
    skip_or_fail(f"{service} is not reachable ({type(exc).__name__}: {exc})")


async def _reset_postgres() -> str:
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
    await reset_schema(url, PG_ADMIN, timeout=5)
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _check_redis() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def make_backend(name: str, tmp_path: Path) -> Backend:
    if name == "sqlite":
        return Backend(name, f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}")
    try:
        url = await asyncio.wait_for(_reset_postgres(), 10)
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    try:
        await asyncio.wait_for(_check_redis(), 5)
    except Exception as exc:
        _unavailable("Redis", exc)
    return Backend(name, url, REDIS_URL)
