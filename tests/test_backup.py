"""Backup and restore (docs/deploy.md, "Backup and restore"), as an operator runs them.

A backup is taken while the server serves and a member keeps writing (``menteo-realtime
backup`` on SQLite, ``pg_dump`` on PostgreSQL); more events follow it (the tail the restore
loses); the backup is restored into a new database and a server started on it. New events
there take the lost events' seqs. A client resuming with a ``since`` from the lost tail and
the old epoch gets ``recovered: false`` and the restored room's history, never a resume
that skips what now holds those seqs.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from menteo_testkit.database import plain_dsn
from realtime.persistence.database import Database
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server

pytestmark = pytest.mark.slow

KEPT = 5  # messages before the backup
LOST = 6  # messages after it: lost with the restore
# The room's whole history in the welcome, and rates that let a member write as fast as
# the server acks while the backup runs.
SETTINGS = {
    "history_limit": 5000,
    "rate_per_second": 1e6,
    "rate_burst": 1_000_000,
    "user_rate_per_second": 1e6,
    "user_rate_burst": 1_000_000,
}
DURING_AT_MOST = 2000  # then the writer waits for the backup to end


async def cli(*args: str, url: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realtime.cli",
        *args,
        env={**os.environ, "MENTEO_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run(*command: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{command[0]} failed:\n{out.decode()}"


def sqlite_path(backend: Backend) -> Path:
    return Path(backend.database_url.split(":///", 1)[1])


async def take_backup(backend: Backend, tmp_path: Path) -> Path:
    """The documented command for the backend, while the server serves."""
    if backend.name == "sqlite":
        dest = tmp_path / "backup" / "menteo-backup.db"
        dest.parent.mkdir()
        code, out, err = await cli("backup", str(dest), url=backend.database_url)
        assert code == 0, err
        assert f"written to {dest}" in out
        return dest
    dest = tmp_path / "menteo.dump"
    await run("pg_dump", "--format=custom", f"--file={dest}", plain_dsn(backend.database_url))
    return dest


async def restore(backend: Backend, backup: Path, tmp_path: Path) -> Backend:
    """The backup in a new database, as the procedure restores it."""
    if backend.name == "sqlite":
        target = tmp_path / "restored" / "menteo.db"
        target.parent.mkdir()
        await asyncio.to_thread(shutil.copyfile, backup, target)
        return Backend(backend.name, f"sqlite+aiosqlite:///{target}")
    dsn = plain_dsn(backend.database_url)
    base, _, name = dsn.rpartition("/")
    restored = name + "_restored"
    admin = await asyncpg.connect(base + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{restored}"')
    finally:
        await admin.close()
    await run("pg_restore", "--no-owner", f"--dbname={base}/{restored}", str(backup))
    url = backend.database_url.rpartition("/")[0] + "/" + restored
    return Backend(backend.name, url, backend.redis_url)


async def keep_writing(client: RoomClient, stop: asyncio.Event, acked: list[str]) -> None:
    """Messages one after another until ``stop``: the backup is taken meanwhile."""
    i = 0
    while not stop.is_set() and i < DURING_AT_MOST:
        body = f"during {i}"
        await client.chat(f"d{i}", body)
        acked.append(body)
        i += 1
    await stop.wait()


async def written(server: Running, room: str, user: str, bodies: list[str]) -> list[int]:
    client = await RoomClient.connect(server.ws, room, server.token(user))
    seqs = [await client.chat(f"{user}-{body}", body) for body in bodies]
    await client.close()
    return seqs


@dataclass
class Scene:
    """A room written before, while and after a backup was taken."""

    room: str
    backup: Path
    acked: list[str]  # bodies acked while the backup ran, in order
    lost: list[int]  # seqs of the messages after it
    epoch: str  # the database's epoch then


async def backed_up(backend: Backend, tmp_path: Path) -> Scene:
    async with run_server(make_settings(backend, **SETTINGS)) as first:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = (await create_room(first.url, first.service(), members))["id"]
        await written(first, room, "ana", [f"kept {i}" for i in range(KEPT)])
        ben = await RoomClient.connect(first.ws, room, first.token("ben"))
        stop, acked = asyncio.Event(), list[str]()
        writer = asyncio.create_task(keep_writing(ben, stop, acked))
        try:
            backup = await take_backup(backend, tmp_path)
        finally:
            stop.set()
            await writer
        assert acked, "no message was written while the backup ran"
        lost = await written(first, room, "ana", [f"lost {i}" for i in range(LOST)])
        return Scene(room, backup, acked, lost, ben.welcome["epoch"])


def assert_restored_history(history: list[dict[str, Any]], acked: list[str], new: int) -> None:
    """The room as the backup held it, then the new messages: in order, nothing lost after
    the backup, every message before it, and of those written while it ran a prefix."""
    bodies = [m["body"] for m in history]
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(set(seqs)), seqs
    assert not [b for b in bodies if b.startswith("lost")], bodies
    assert [b for b in bodies if b.startswith("kept")] == [f"kept {i}" for i in range(KEPT)]
    during = [b for b in bodies if b.startswith("during")]
    assert during == acked[: len(during)], (during, acked)
    assert [b for b in bodies if b.startswith("new")] == [f"new {i}" for i in range(new)]


async def test_a_restored_backup_resumes_nothing_from_the_lost_tail(
    backend: Backend, tmp_path: Path
) -> None:
    scene = await backed_up(backend, tmp_path)
    restored = await restore(backend, scene.backup, tmp_path)
    async with run_server(make_settings(restored, **SETTINGS)) as server:
        assert server.state is not None
        epoch = server.state.db.epoch
        assert epoch != scene.epoch  # the restore was seen: a new epoch
        # New messages take every lost seq (those acked while the backup was finishing, and
        # the ones after it), and one more.
        ben = await RoomClient.connect(server.ws, scene.room, server.token("ben"))
        restored_last = ben.welcome["seq"]
        await ben.close()
        assert restored_last < scene.lost[0]
        count = scene.lost[-1] - restored_last + 1
        new = await written(server, scene.room, "ben", [f"new {i}" for i in range(count)])
        assert new[0] == restored_last + 1 and new[-1] > scene.lost[-1]
        for since in (restored_last + 1, scene.lost[-1]):  # from the lost tail, with its epoch
            back = await RoomClient.connect(
                server.ws, scene.room, server.token("ana"), since=since, epoch=scene.epoch
            )
            assert back.welcome["epoch"] == epoch
            assert back.welcome["recovered"] is False
            assert_restored_history(back.welcome["history"], scene.acked, count)
            assert back.welcome["history"][-1]["seq"] == back.welcome["seq"] == new[-1]
            await back.close()
        # A resume point of the restored database's own epoch resumes as always.
        again = await RoomClient.connect(
            server.ws, scene.room, server.token("ana"), since=new[2], epoch=epoch
        )
        assert again.welcome["recovered"] is True
        frames = [await again.recv_until(lambda f, s=s: f.get("seq") == s) for s in new[3:]]
        assert [f["body"] for f in frames] == [f"new {i}" for i in range(3, count)]


async def test_each_restore_of_one_backup_gets_its_own_epoch_once(tmp_path: Path) -> None:
    """The backup's mark turns into a new epoch on the first start of each restored copy;
    later starts of that copy keep it (it is the copy's epoch now)."""
    live = tmp_path / "live.db"
    db = Database(f"sqlite+aiosqlite:///{live}")
    await db.prepare(auto_migrate=True)
    await db.close()
    code, out, err = await cli("backup", str(tmp_path / "b.db"), url=f"sqlite:///{live}")
    assert code == 0, err
    assert f"backup of epoch {db.epoch} written to" in out
    seen = [db.epoch]
    for copy in ("one.db", "two.db"):
        await asyncio.to_thread(shutil.copyfile, tmp_path / "b.db", tmp_path / copy)
        for start in range(2):
            restored = Database(f"sqlite+aiosqlite:///{tmp_path / copy}")
            await restored.prepare(auto_migrate=False)
            await restored.close()
            if start == 0:
                assert restored.epoch not in seen
                seen.append(restored.epoch)
            else:
                assert restored.epoch == seen[-1]


async def test_new_epoch_makes_every_older_resume_point_resume_nothing(
    backend: Backend,
) -> None:
    """After a restore the server cannot tell by itself (a point-in-time recovery, a dump
    restored into the same database, a file copied by other tools): ``new-epoch``."""
    async with run_server(make_settings(backend)) as first:
        members = [("ana", "Ana", "mentor")]
        room = (await create_room(first.url, first.service(), members))["id"]
        seqs = await written(first, room, "ana", ["one", "two", "three"])
        assert first.state is not None
        old = first.state.db.epoch
    code, out, err = await cli("new-epoch", url=backend.database_url)
    assert code == 0, err
    match = re.fullmatch(r"epoch (\w+) -> (\w+): resume points from before resume nothing\n", out)
    assert match and match[1] == old and match[2] != old, out
    async with run_server(make_settings(backend)) as second:
        back = await RoomClient.connect(
            second.ws, room, second.token("ana"), since=seqs[0], epoch=old
        )
        assert back.welcome["epoch"] == match[2]
        assert back.welcome["recovered"] is False
        assert [m["body"] for m in back.welcome["history"]] == ["one", "two", "three"]


async def test_backup_refuses_what_it_cannot_copy(tmp_path: Path) -> None:
    pg = "postgresql+asyncpg://postgres@127.0.0.1:5432/nowhere"
    code, _, err = await cli("backup", str(tmp_path / "b.db"), url=pg)
    assert code == 2 and "pg_dump" in err
    code, _, err = await cli("backup", str(tmp_path / "b.db"), url=f"sqlite:///{tmp_path}/no.db")
    assert code == 1 and "no database at" in err
    live = tmp_path / "live.db"
    db = Database(f"sqlite+aiosqlite:///{live}")
    await db.prepare(auto_migrate=True)
    await db.close()
    taken = tmp_path / "taken.db"
    await asyncio.to_thread(taken.write_bytes, b"keep me")
    code, _, err = await cli("backup", str(taken), url=f"sqlite:///{live}")
    assert code == 1 and "never overwrites" in err
    assert await asyncio.to_thread(taken.read_bytes) == b"keep me"
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.partial")))


async def test_a_backup_path_is_a_path_not_a_url(tmp_path: Path) -> None:
    """A name holding '?' is a file name: the restore mark goes into the copy, never into
    the file the same text names as a URL (here the live database)."""
    live = tmp_path / "live.db"
    db = Database(f"sqlite+aiosqlite:///{live}")
    await db.prepare(auto_migrate=True)
    await db.close()
    dest = tmp_path / "live.db?x"
    code, _, err = await cli("backup", str(dest), url=f"sqlite:///{live}")
    assert code == 0, err

    def meta(path: Path) -> dict[str, str]:
        with closing(sqlite3.connect(path)) as conn:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    assert "restore" not in await asyncio.to_thread(meta, live)
    assert (await asyncio.to_thread(meta, dest))["restore"] == db.epoch
