"""A private ``redis-server`` on a free loopback port: a test or the soak can kill and restart
it (it always starts empty) without touching the machine's shared Redis."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from menteo_testkit import procstat
from menteo_testkit.ports import HOST, free_port, listening
from menteo_testkit.waits import wait_until

__all__ = ["RedisServer"]


class RedisServer:
    """One ``redis-server`` process at a time on a fixed port (restarts reuse it)."""

    def __init__(self, workdir: Path, *, maxclients: int | None = None) -> None:
        self.port = free_port()
        self.dir = workdir
        self.maxclients = maxclients
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_ticks_done = 0  # CPU of earlier incarnations

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def command(self) -> list[str]:
        # No RDB, no AOF: a restart is empty, as a Redis that lost its memory.
        args = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip
        if self.maxclients is not None:
            args += ["--maxclients", str(self.maxclients)]
        return args

    async def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        self.proc = await asyncio.to_thread(  # fork and exec off the event loop
            subprocess.Popen, self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await wait_until(self._accepting, f"redis-server to accept on port {self.port}", timeout)

    async def _accepting(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited at start ({self.proc.returncode})")
        return await listening(self.port)

    def kill(self) -> None:
        """``kill -9`` and reap it (immediate: nothing to wait for)."""
        if self.proc is not None:
            self.cpu_ticks_done += procstat.cpu_ticks(self.proc.pid) or 0
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    stop = kill
