"""The server (or a reference server) as a subprocess on a loopback port: the one launcher
of the benchmarks and the soak. (The tests run it in their own event loop, or as
``tests.servers.ServerProcess`` when they need its output line by line.)"""

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

import httpx

from menteo_testkit import procstat
from menteo_testkit.ports import HOST

# The checkout this package is in: whose ``realtime`` the servers run unless told otherwise.
CHECKOUT = Path(__file__).resolve().parent.parent


def child_env(
    settings: dict[str, str], src: Path = CHECKOUT, *, inherit_pythonpath: bool = True
) -> dict[str, str]:
    """The environment of a server process: ours without any inherited ``MENTEO_*`` (they
    would silently change what is measured), then ``settings``; ``python -m realtime.cli``
    finds the checkout ``src`` first wherever the caller runs from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    inherited = os.environ.get("PYTHONPATH") if inherit_pythonpath else None
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), inherited) if p)
    return env


def serve_command(port: int, host: str = HOST) -> list[str]:
    """``realtime.cli serve`` at --log-level warning (no access log line per socket)."""
    return [sys.executable, "-m", "realtime.cli", "serve", "--host", host,
            "--port", str(port), "--log-level", "warning"]  # fmt: skip


@dataclass
class Server:
    """One server process on a fixed port (restarts reuse it), its output in ``log_path``
    (each start appends, after a header line).

    ``command``: default ``serve_command(port)``; ``cpus``: a ``taskset`` CPU list;
    ``probe``: ``"readyz"`` (ours: ready when ``/readyz`` answers 200) or ``"tcp"`` (a
    reference server: the listener is up)."""

    port: int
    proc: subprocess.Popen[bytes] | None
    log_path: Path
    name: str = ""
    env: dict[str, str] = field(default_factory=lambda: child_env({}))
    cwd: Path = CHECKOUT
    command: list[str] | None = None
    cpus: str | None = None
    probe: str = "readyz"
    starts: int = 0
    kills: int = 0
    cpu_ticks_done: int = 0  # CPU of earlier incarnations
    pids: list[int] = field(default_factory=list)
    ready: bool = False  # what a load balancer's health check (/readyz) would say

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    http = url

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    # Starting ------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the process; ``wait_ready`` (or ``start``) waits for it to serve."""
        cmd = self.command or serve_command(self.port)
        if self.cpus is not None:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        with self.log_path.open("ab" if self.starts else "wb") as log:
            log.write(f"\n===== start #{self.starts + 1} at {time.time():.3f} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        self.pids.append(self.proc.pid)

    def _exited(self) -> RuntimeError | None:
        assert self.proc is not None
        if self.proc.poll() is None:
            return None
        return RuntimeError(
            f"server {self.name} exited {self.proc.returncode} at start:\n" + self.log_tail(40)
        )

    def _not_ready(self, timeout: float) -> RuntimeError:
        return RuntimeError(f"server {self.name} not ready in {timeout:.0f} s:\n" + self.log_tail())

    def _tcp_up(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                return True
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0, every: float = 0.05) -> None:
        """Block until the server serves (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if (exc := self._exited()) is not None:
                    raise exc
                if self.probe == "tcp":
                    if self._tcp_up():
                        time.sleep(0.3)  # the listener is up: let the app finish starting
                        self.ready = True
                        return
                else:
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(self.url + "/readyz").status_code == 200:
                            self.ready = True
                            return
                time.sleep(every)
        raise self._not_ready(timeout)

    async def wait_ready_async(self, timeout: float = 30.0, every: float = 0.05) -> None:
        """``wait_ready`` without blocking the event loop (``/readyz`` only)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if (exc := self._exited()) is not None:
                    raise exc
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/readyz")).status_code == 200:
                        self.ready = True
                        return
                await asyncio.sleep(every)
        raise self._not_ready(timeout)

    async def start(self, timeout: float = 60.0) -> float:
        """Spawn and wait until ``/readyz`` answers 200; returns the seconds it took."""
        started = time.monotonic()
        self.spawn()
        await self.wait_ready_async(timeout, every=0.1)
        return time.monotonic() - started

    # Stopping ------------------------------------------------------------------------------

    def kill(self) -> None:
        """``kill -9``: nothing is closed, flushed or committed."""
        self.ready = False
        if self.proc is not None and self.proc.poll() is None:
            self.cpu_ticks_done += procstat.cpu_ticks(self.proc.pid) or 0
            self.proc.kill()
            self.proc.wait()
            self.kills += 1
        self.proc = None

    def send_stop(self) -> None:
        """SIGTERM (the documented drain), once; ``wait_stopped`` waits for the exit."""
        self.ready = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15.0) -> int | None:
        """The exit status after ``send_stop``, or after SIGKILL past ``timeout``. Uvicorn
        re-raises the signal once it has shut down, so a clean exit is -15 (or 0)."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def terminate(self, timeout: float = 15.0) -> int | None:
        """``send_stop`` then ``wait_stopped``, blocking; the process stays for its log and
        its exit status."""
        self.send_stop()
        return self.wait_stopped(timeout)

    async def stop(self, timeout: float = 20.0) -> tuple[int | None, float]:
        """``terminate`` without blocking the event loop: the exit status and the seconds it
        took; the process is forgotten (``start`` again reuses the port)."""
        if self.proc is None:
            self.ready = False
            return None, 0.0
        self.cpu_ticks_done += procstat.cpu_ticks(self.proc.pid) or 0
        started = time.monotonic()
        code = await asyncio.get_running_loop().run_in_executor(None, self.terminate, timeout)
        self.proc = None
        return code, time.monotonic() - started

    # Readings ------------------------------------------------------------------------------

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the process so far (None when it is gone or has no /proc)."""
        ticks = procstat.cpu_ticks(self.proc.pid) if self.proc is not None else None
        return None if ticks is None else ticks / procstat.CLK_TCK

    def tree_cpu_seconds(self) -> float:
        """CPU of the process and its children (Granian's worker), 0 when gone."""
        if self.proc is None:
            return 0.0
        ticks = (procstat.cpu_ticks(p) for p in procstat.process_tree(self.proc.pid))
        return sum(t for t in ticks if t is not None) / procstat.CLK_TCK

    def tree_rss_kib(self) -> int:
        if self.proc is None:
            return 0
        return sum(procstat.rss_kib(p) for p in procstat.process_tree(self.proc.pid))

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_lines()[-n:])

    def problems(self, prefix: str = "") -> list[str]:
        """Log lines that signal trouble (the server runs at --log-level warning, so few)."""
        return [prefix + line for line in self.log_lines()
                if "Traceback" in line or "ERROR" in line or "Error" in line]  # fmt: skip

    def warnings(self, prefix: str = "") -> list[str]:
        return [prefix + line for line in self.log_lines() if "WARNING" in line]
