"""Without MENTEO_SECRET, SQLite keeps the generated dev secret in the database: a restarted
server (``make run`` again) accepts the tokens of every page still open. PostgreSQL keeps
a secret per process as before (``check`` fails it), and ``--workers`` still refuses."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import sqlalchemy as sa

from realtime.app import DEV_SECRET_KEY
from realtime.auth import issue_token
from realtime.config import Settings
from tests.backends import Backend
from tests.client import RoomClient, close_code, create_room
from tests.servers import run_server


def dev_settings(backend: Backend) -> Settings:
    """The settings ``serve`` reads when MENTEO_SECRET is unset."""
    env = {"MENTEO_DATABASE_URL": backend.database_url, "MENTEO_REDIS_URL": backend.redis_url}
    return Settings.from_env(env)


async def test_a_restarted_server_on_sqlite_accepts_the_tokens_of_the_last_one(
    backend: Backend,
) -> None:
    settings = dev_settings(backend)
    assert settings.dev_secret
    async with run_server(settings) as first:
        assert first.state is not None
        secret = first.state.settings.secret
        service = {"authorization": "Bearer " + issue_token(secret, "b", "B", role="service")}
        room = await create_room(first.url, service, [("ana", "Ana", "mentor")])
        token = issue_token(secret, "ana", "Ana")
        before = await RoomClient.connect(first.ws, room["id"], token)
        assert before.welcome["you"]["user_id"] == "ana"
        await before.close()

    # A second start reads the settings afresh: another random secret, until the database.
    async with run_server(dev_settings(backend)) as second:
        assert second.state is not None
        path = f"/rooms/{room['id']}/ws?token={token}"
        if backend.name == "sqlite":
            assert second.state.settings.secret == secret
            assert second.state.settings.dev_secret  # still a dev setup: `check` warns
            after = await RoomClient.connect(second.ws, room["id"], token)
            assert after.welcome["you"]["user_id"] == "ana"
        else:
            # PostgreSQL: the secret stays the process's own, and no database holds it.
            assert second.state.settings.secret != secret
            assert await close_code(second.ws, path, subprotocols=["menteo.v1.json"]) == 4401
            async with second.state.db.read() as conn:
                found = await conn.execute(
                    sa.text("SELECT count(*) FROM meta WHERE key = :key"), {"key": DEV_SECRET_KEY}
                )
            assert found.scalar() == 0


async def test_an_explicit_secret_is_used_and_the_dev_secret_is_not_read(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}"
    async with run_server(Settings.from_env({"MENTEO_DATABASE_URL": url})) as dev:
        assert dev.state is not None
        kept = dev.state.settings.secret
    explicit = "an-explicit-secret-of-at-least-32-bytes-0123"
    env = {"MENTEO_DATABASE_URL": url, "MENTEO_SECRET": explicit}
    async with run_server(Settings.from_env(env)) as configured:
        assert configured.state is not None
        assert configured.state.settings.secret == explicit != kept
        assert not configured.state.settings.dev_secret


async def test_workers_still_need_an_explicit_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")}
    env["MENTEO_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}"
    env["MENTEO_REDIS_URL"] = "redis://127.0.0.1:1/0"  # never reached: refused before
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realtime.cli",
        "serve",
        "--workers",
        "2",
        "--port",
        "0",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"--workers > 1 needs MENTEO_SECRET" in err
