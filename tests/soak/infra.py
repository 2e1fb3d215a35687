"""What the soak runs on: a private Redis, the server processes, the database, and the
sampler that records each process's memory and CPU from ``/proc`` (Linux only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Processes ---------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a fixed free port, so it can be killed and restarted
    without touching the machine's shared Redis."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_ticks_done = 0  # CPU of earlier incarnations

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--maxclients", "1000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            await asyncio.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.cpu_ticks_done += cpu_ticks(self.proc.pid) or 0
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Server:
    """``python -m realtime.cli serve`` on a fixed port (restarts reuse it), output to a log."""

    name: str
    port: int
    env: dict[str, str]
    src: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    cpu_ticks_done: int = 0  # CPU of earlier incarnations
    pids: list[int] = field(default_factory=list)
    ready: bool = False  # what a load balancer's health check (/readyz) would say

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    async def start(self, timeout: float = 60) -> float:
        """Start and wait until ``/readyz`` answers 200; returns the seconds it took."""
        started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(self.src)
        with self.log_path.open("ab" if self.starts else "wb") as log:
            log.write(f"\n===== start #{self.starts + 1} at {time.time():.3f} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "realtime.cli", "serve",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=self.src,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.pids.append(self.proc.pid)
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server {self.name} exited at start: see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/readyz")).status_code == 200:
                        self.ready = True
                        return time.monotonic() - started
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server {self.name} not ready after {timeout} s")

    def kill(self) -> None:
        """``kill -9``: nothing is closed, flushed or committed."""
        self.ready = False
        if self.proc is not None and self.proc.poll() is None:
            self.cpu_ticks_done += cpu_ticks(self.proc.pid) or 0
            self.proc.kill()
            self.proc.wait()
            self.kills += 1
        self.proc = None

    async def stop(self, timeout: float = 20) -> tuple[int | None, float]:
        """SIGTERM (the documented drain), then SIGKILL after ``timeout``. Returns the exit
        status and the seconds it took. Uvicorn re-raises the signal once it has shut down,
        so a clean exit is -15 (or 0)."""
        self.ready = False
        if self.proc is None:
            return None, 0.0
        self.cpu_ticks_done += cpu_ticks(self.proc.pid) or 0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            code = await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout)
        except TimeoutError:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code, time.monotonic() - started


# The database ------------------------------------------------------------------------------


async def reset_database(admin_dsn: str, name: str) -> None:
    """Drop and create ``name`` (its tables are created by the first server to start)."""
    if name in ("test", "postgres") or name.startswith(("menteo_test", "menteo_bench")):
        raise ValueError(f"refusing to reset database {name!r}: others use it")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# /proc sampling ----------------------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


@dataclass
class Sample:
    t: float  # seconds since the start of the load
    rss: dict[str, int | None]  # server name -> bytes (None: not running)
    pid: dict[str, int | None]
    conns: dict[str, int]  # server name -> sockets our clients hold open there
    generator_rss: int


class Sampler:
    """Every ``interval`` seconds: each server's RSS and pid, and our sockets per server.
    CPU is read as totals at the start and the end (``cpu_report``)."""

    def __init__(
        self, servers: list[Server], redis: RedisServer, conns: Any, interval: float
    ) -> None:
        self.servers = servers
        self.redis = redis
        self.conns = conns  # () -> dict[server name, open sockets]
        self.interval = interval
        self.samples: list[Sample] = []
        self.t0 = time.monotonic()
        self.lags: list[float] = []  # event loop lag of this (the load generator) process
        self.pg_ticks: dict[int, int] = {}
        self.pg_dsn: str | None = None

    def mark_start(self) -> None:
        self.t0 = time.monotonic()
        self.cpu_start = self._cpu_now()

    def _cpu_now(self) -> dict[str, float]:
        t = os.times()
        busy, total = machine_ticks()
        now: dict[str, float] = {
            "wall": time.monotonic(),
            "generator": t.user + t.system,
            "machine_busy": busy / CLK_TCK,
            "machine_total": total / CLK_TCK,
            "redis": (self.redis.cpu_ticks_done + (cpu_ticks(self.redis.pid or -1) or 0))
            / CLK_TCK,
            "postgres": sum(self.pg_ticks.values()) / CLK_TCK,
        }
        for s in self.servers:
            now[s.name] = (s.cpu_ticks_done + (cpu_ticks(s.pid or -1) or 0)) / CLK_TCK
        return now

    def cpu_report(self) -> dict[str, float]:
        """Cores used on average since ``mark_start`` (1.0 = one core busy all the time)."""
        end = self._cpu_now()
        wall = end["wall"] - self.cpu_start["wall"]
        out = {k: (end[k] - self.cpu_start[k]) / wall for k in end if k not in ("wall",)}
        span = end["machine_total"] - self.cpu_start["machine_total"]
        out["machine_busy"] = (
            (end["machine_busy"] - self.cpu_start["machine_busy"]) / span * (os.cpu_count() or 1)
        )
        del out["machine_total"]
        return out

    async def run(self, stop: asyncio.Event) -> None:
        pg = await self._pg_connect()
        try:
            while not stop.is_set():
                self.samples.append(
                    Sample(
                        t=time.monotonic() - self.t0,
                        rss={s.name: rss_bytes(s.pid) if s.pid else None for s in self.servers},
                        pid={s.name: s.pid for s in self.servers},
                        conns=self.conns(),
                        generator_rss=rss_bytes(os.getpid()) or 0,
                    )
                )
                if pg is not None:
                    await self._pg_sample(pg)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            if pg is not None:
                await pg.close()

    async def _pg_connect(self) -> asyncpg.Connection | None:
        if self.pg_dsn is None:
            return None
        with contextlib.suppress(Exception):
            return await asyncpg.connect(self.pg_dsn)
        return None

    async def _pg_sample(self, pg: asyncpg.Connection) -> None:
        """CPU of the PostgreSQL backends serving our database (approximate: a backend's
        ticks are counted up to the last sample it was seen in)."""
        with contextlib.suppress(Exception):
            rows = await pg.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
            for row in rows:
                ticks = cpu_ticks(row["pid"])
                if ticks is not None:
                    self.pg_ticks[row["pid"]] = max(ticks, self.pg_ticks.get(row["pid"], 0))

    async def loop_lag(self, stop: asyncio.Event, every: float = 0.25) -> None:
        """How late this process's event loop wakes up: a busy load generator shows here."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(every)
            self.lags.append(loop.time() - before - every)


def token(
    secret: str, user_id: str, name: str | None = None, ttl: float = 3600, role: str | None = None
) -> str:
    """A token as the platform would sign it (HS256), made here rather than with
    ``realtime.auth`` so that the scripts also drive another checkout (``--src``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id, "name": name or user_id.title(), "iat": now, "exp": now + int(ttl)
    }
    if role:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm="HS256")
