"""What the soak runs on: a private Redis, the server processes (``menteo_testkit``'s
launcher on a fixed port, for restarts), the database, and the sampler that records each
process's memory and CPU from ``/proc`` (Linux only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from menteo_testkit.database import recreate_database as reset_database
from menteo_testkit.faultproxy import FaultProxy, ProxyLoop, ThreadedProxy
from menteo_testkit.pg_server import PgServer
from menteo_testkit.ports import free_port
from menteo_testkit.procstat import CLK_TCK, cpu_ticks, machine_ticks, rss_bytes
from menteo_testkit.redis_server import RedisServer
from menteo_testkit.server import HOST, Server, child_env
from menteo_testkit.tokens import token

__all__ = [
    "FaultProxy",
    "PgServer",
    "ProxyLoop",
    "RedisServer",
    "Sample",
    "Sampler",
    "Server",
    "ThreadedProxy",
    "free_port",
    "launcher",
    "reset_database",
    "token",
]


# Processes ---------------------------------------------------------------------------------


def launcher(
    name: str,
    env: dict[str, str],
    src: Path,
    log_path: Path,
    traced: tuple[Path, int] | None = None,
) -> Server:
    """``python -m realtime.cli serve`` of the checkout ``src`` on a fixed free port (restarts
    reuse it), with ``env`` and none of our own ``MENTEO_*``, output to ``log_path``.
    ``traced`` (a file, frames): under tracemalloc instead (bench/memprofile_server.py),
    each SIGUSR1 writing what was allocated since the one before to that file."""
    port = free_port()
    command = None
    if traced is not None:
        env = {
            **env,
            "MENTEO_BENCH_TRACEMALLOC_OUT": str(traced[0]),
            "MENTEO_BENCH_TRACEMALLOC_FRAMES": str(traced[1]),
        }
        command = [sys.executable, str(src / "bench" / "memprofile_server.py"), "serve",
                   "--host", HOST, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return Server(
        port,
        None,
        log_path,
        name=name,
        env=child_env(env, src, inherit_pythonpath=False),
        cwd=src,
        command=command,
    )


def snapshot(servers: list[Server]) -> None:
    """Each traced server that is up writes what it allocated since its first snapshot (one
    still starting is skipped: SIGUSR1 before its handler is installed would end it)."""
    for server in servers:
        proc = server.proc
        if server.command is not None and server.ready and proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)


# /proc sampling ----------------------------------------------------------------------------


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
            "redis": (self.redis.cpu_ticks_done + (cpu_ticks(self.redis.pid or -1) or 0)) / CLK_TCK,
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
            await asyncio.sleep(every)  # what is measured: how late this sleep wakes
            self.lags.append(loop.time() - before - every)
