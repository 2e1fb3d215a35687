"""Many processes starting at once on one PostgreSQL database (docs/deploy.md, "Three
processes on one machine"): ``serve --workers 3``, or three ``serve`` processes started
together, on an empty database, a freshly migrated one and one an older release left,
all come up, every process serving, with one epoch.

Every process subscribes the ``access`` stream on a channel named by its epoch
(``menteo:<epoch>:s:access``) once its database is prepared: Redis' count of that
channel's subscribers says how many processes serve that epoch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from menteo_testkit.ports import free_port
from menteo_testkit.waits import wait_until
from realtime.auth import issue_token
from realtime.persistence.database import alembic_config
from tests.backends import Backend, make_backend
from tests.client import RoomClient, create_room
from tests.servers import SECRET, ServerProcess, process_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

WORKERS = 3
OLDER = "0008"  # a revision some releases back: the start migrates it (MENTEO_AUTO_MIGRATE)
OLD_EPOCH = "0123456789ab"  # the epoch an older release wrote


async def empty(backend: Backend) -> None:
    """As make_backend left it: no table at all."""


async def migrated(backend: Backend) -> None:
    env = {**os.environ, **process_env(backend)}
    cmd = [sys.executable, "-m", "realtime.cli", "migrate"]
    done = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def older(backend: Backend) -> None:
    """The schema at an older revision, with the epoch row an older release wrote."""
    engine = create_async_engine(backend.database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), OLDER))
            await conn.execute(
                text("INSERT INTO meta (key, value) VALUES ('epoch', :e)"), {"e": OLD_EPOCH}
            )
    finally:
        await engine.dispose()


STATES: dict[str, Callable[[Backend], Awaitable[None]]] = {
    "empty": empty,
    "migrated": migrated,
    "older": older,
}


async def stored_epochs(backend: Backend) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(backend.database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT value FROM meta WHERE key = 'epoch'")
        revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    assert revision is not None
    return [row["value"] for row in rows]


async def serving(backend: Backend, epoch: str) -> int:
    """How many processes serve ``epoch`` (the subscribers of its ``access`` channel)."""
    client = aioredis.Redis.from_url(backend.redis_url)
    try:
        counts = await client.pubsub_numsub(f"menteo:{epoch}:s:access")
    finally:
        await client.aclose()
    return int(counts[0][1])


async def wait_serving(backend: Backend, epoch: str, count: int) -> None:
    async def all_up() -> bool:
        return await serving(backend, epoch) == count

    await wait_until(all_up, f"{count} processes to serve epoch {epoch}", 60, every=0.1)


@asynccontextmanager
async def serve_workers(backend: Backend, log: Path) -> AsyncIterator[str]:
    """``menteo-realtime serve --workers 3``, ready; its base URL."""
    port = free_port()
    env = {**os.environ, **process_env(backend), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "realtime.cli", "serve", "--workers", str(WORKERS)]
    with log.open("wb") as out:
        proc = await asyncio.to_thread(
            subprocess.Popen, [*cmd, "--port", str(port)], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                if proc.poll() is not None:
                    output = await asyncio.to_thread(log.read_text)
                    raise AssertionError("the supervisor stopped:\n" + output[-3000:])
                try:
                    return (await http.get(url + "/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(ready, f"{url}/readyz to answer 200", 60, every=0.1)
        yield url
        if proc.poll() is not None:
            output = await asyncio.to_thread(log.read_text)
            raise AssertionError("the supervisor stopped:\n" + output[-3000:])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 30)
            except TimeoutError:
                proc.kill()
                proc.wait()


async def welcome_epoch(url: str) -> str:
    headers = {"authorization": "Bearer " + issue_token(SECRET, "backend", "B", role="service")}
    room = await create_room(url, headers, [("ana", "Ana", "mentor")])
    ws = url.replace("http://", "ws://")
    client = await RoomClient.connect(ws, room["id"], issue_token(SECRET, "ana", "Ana"))
    epoch = client.welcome["epoch"]
    await client.close()
    assert isinstance(epoch, str)
    return epoch


@pytest.mark.parametrize("state", list(STATES))
async def test_workers_come_up_with_one_epoch(state: str, tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)
    await STATES[state](backend)
    log = tmp_path / "serve.log"
    async with serve_workers(backend, log) as url:
        epochs = await stored_epochs(backend)
        assert len(epochs) == 1, epochs
        (epoch,) = epochs
        if state == "older":
            assert epoch == OLD_EPOCH  # an upgrade keeps the epoch: clients resume as before
        await wait_serving(backend, epoch, WORKERS)
        async with httpx.AsyncClient() as http:
            for _ in range(2 * WORKERS):
                ready = await http.get(url + "/readyz")
                assert ready.status_code == 200, ready.text
        assert {await welcome_epoch(url) for _ in range(2 * WORKERS)} == {epoch}
        output = await asyncio.to_thread(log.read_text)
    assert output.count("Application startup complete.") == WORKERS, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("state", list(STATES))
async def test_processes_started_together_come_up_with_one_epoch(
    state: str, tmp_path: Path
) -> None:
    backend = await make_backend("postgres+redis", tmp_path)
    await STATES[state](backend)
    servers = [ServerProcess(process_env(backend)) for _ in range(WORKERS)]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        (epoch,) = await stored_epochs(backend)
        await wait_serving(backend, epoch, WORKERS)
        assert [await welcome_epoch(server.url) for server in servers] == [epoch] * WORKERS
    finally:
        for server in servers:
            server.kill()
    for server in servers:
        assert "Traceback" not in "".join(server.output), "".join(server.output)[-3000:]
