"""A private PostgreSQL cluster on a free loopback port (``initdb`` + ``pg_ctl``): the soak
stops and restarts it under load without touching the machine's shared server.

PostgreSQL refuses to run as root; when we are root, every command runs as the ``postgres``
user (``runuser``) and the data directory is handed to it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from menteo_testkit.ports import HOST, free_port
from menteo_testkit.waits import wait_until

__all__ = ["PgServer", "pg_bin"]


def pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with ``initdb``, or ``initdb`` on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PgServer:
    """One PostgreSQL cluster in ``workdir/pgdata``, trust auth for ``postgres`` on
    ``HOST:port``; ``restart`` stops it (``-m immediate``: a crash, no checkpoint) and starts
    it again on the same port."""

    def __init__(self, workdir: Path, *, max_connections: int = 200) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
        self.bin = bindir
        self.port = free_port()
        self.dir = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        self.max_connections = max_connections
        self.as_user = "postgres" if os.geteuid() == 0 else None
        self.restarts = 0

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def dsn(self, database: str, port: int | None = None) -> str:
        """asyncpg's DSN of ``database``, through ``port`` (a proxy) if given."""
        return f"postgresql://postgres@{HOST}:{port or self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_user is not None:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, timeout=120)

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.as_user is not None:
            entry = pwd.getpwnam(self.as_user)
            for path in (self.dir, self.log.parent):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        with (self.dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '{HOST}'\nport = {self.port}\n"
                f"max_connections = {self.max_connections}\nunix_socket_directories = ''\n"
                "shared_buffers = 64MB\nfsync = on\nsynchronous_commit = on\n"
                # Who waits on whose row locks, and when each backend ends: a lock held by a
                # stopping process shows in the log (the soak reads it after a run).
                "log_lock_waits = on\nlog_disconnections = on\n"
            )

    async def start(self, timeout: float = 30.0) -> None:
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-w", "-t",
            str(int(timeout)), "start",
        )  # fmt: skip
        await wait_until(self._ready, f"postgres to accept on port {self.port}", timeout)

    async def _ready(self) -> bool:
        done = await asyncio.to_thread(
            self._run, "pg_isready", "-h", HOST, "-p", str(self.port), check=False
        )
        return done.returncode == 0

    async def stop(self, mode: str = "fast") -> None:
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.dir), "-m", mode, "-w", "stop", check=False
        )

    async def restart(self, down: float = 0.0, mode: str = "immediate") -> None:
        """Stop (``mode``), stay down ``down`` seconds, start again."""
        await self.stop(mode)
        if down:
            await asyncio.sleep(down)  # the outage itself
        await self.start()
        self.restarts += 1

    def pids(self) -> list[int]:
        """The postmaster's pid (its first line of ``postmaster.pid``), for CPU readings."""
        try:
            return [int((self.dir / "postmaster.pid").read_text().split()[0])]
        except (OSError, ValueError, IndexError):
            return []

    async def destroy(self) -> None:
        await self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
