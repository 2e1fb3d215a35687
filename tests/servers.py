"""Real servers for tests: in-process uvicorn on port 0, or a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.routing import BaseRoute

from menteo_testkit.tokens import SECRET
from menteo_testkit.waits import wait_event, wait_until
from realtime.app import create_app
from realtime.auth import issue_token
from realtime.cli import uvicorn_options
from realtime.config import Settings
from realtime.state import State
from tests.backends import Backend

__all__ = [
    "SECRET",
    "Running",
    "ServerProcess",
    "make_settings",
    "process_env",
    "run_server",
    "wait_ready",
]


@dataclass
class Running:
    url: str  # http://127.0.0.1:PORT
    settings: Settings
    state: State | None = None
    server: uvicorn.Server | None = None

    def __repr__(self) -> str:  # short: Hypothesis prints it with every failing example
        return f"Running({self.url!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis' printer
        printer.text(repr(self))

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")

    def token(self, user_id: str, name: str | None = None, **kw: Any) -> str:
        return issue_token(self.settings.secret, user_id, name or user_id.title(), **kw)

    def service(self) -> dict[str, str]:
        return {"authorization": "Bearer " + self.token("backend", "Backend", role="service")}


def make_settings(backend: Backend, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "secret": SECRET,
        "presence_grace": 0.5,
        "presence_ttl": 3.0,
    }
    base.update(overrides)
    return Settings.from_env({}, **base)


@contextlib.asynccontextmanager
async def run_server(
    settings: Settings, *, extra_routes: Sequence[BaseRoute] = ()
) -> AsyncIterator[Running]:
    """The app under uvicorn in this event loop, on an ephemeral loopback port
    (``extra_routes``: as ``serve --demo`` adds its own)."""
    app = create_app(settings, extra_routes=extra_routes)
    options = uvicorn_options(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        # uvicorn sets a flag, no event: looked at until it is up or the task has ended.
        await wait_until(lambda: server.started or task.done(), "uvicorn to start", 15)
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Running(f"http://127.0.0.1:{port}", settings, app.state.menteo, server)
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await task


@dataclass
class ServerProcess:
    """``menteo-realtime serve`` in its own process, for restarts, signals and scale-out."""

    env: dict[str, str]
    port: int = 0
    module: str = "realtime.cli"  # what ``python -m`` runs: the CLI, or a test's wrapper of it
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)
    # Lines awaited by logged(): text -> (the waiter's loop, its event); set from the reader.
    watches: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(
        default_factory=dict
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.to_thread(  # fork and exec off the event loop
            subprocess.Popen,
            [sys.executable, "-m", self.module, "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(30):
            while True:
                line = (await loop.run_in_executor(None, self.proc.stdout.readline)).decode()
                if not line:
                    raise RuntimeError("server exited:\n" + "".join(self.output))
                self.output.append(line)
                match = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                    break
        self._drain = loop.run_in_executor(None, self._read_rest)
        await wait_ready(self.url)

    def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under us by kill()
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                self.output.append(line)
                for text, (loop, found) in list(self.watches.items()):
                    if text in line:
                        loop.call_soon_threadsafe(found.set)

    async def logged(self, text: str, timeout: float = 15) -> None:
        """Wait until the server writes a line containing ``text`` (or already has)."""
        found = asyncio.Event()
        self.watches[text] = (asyncio.get_running_loop(), found)
        try:
            if not any(text in line for line in self.output):
                await wait_event(found, f"the server to log {text!r}", timeout)
        finally:
            self.watches.pop(text, None)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        loop = asyncio.get_running_loop()
        code = await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout)
        await self._drain
        self._close_pipe()
        return code

    def kill(self) -> None:
        """Like ``kill -9``: the process gets no chance to close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def process_env(backend: Backend, **extra: str) -> dict[str, str]:
    env = {
        "MENTEO_DATABASE_URL": backend.database_url,
        "MENTEO_SECRET": SECRET,
        "MENTEO_REDIS_URL": backend.redis_url,
        "MENTEO_AUTO_MIGRATE": "1",
    }
    env.update(extra)
    return env


async def wait_ready(url: str, timeout: float = 15) -> None:
    async with httpx.AsyncClient() as client:

        async def ready() -> bool:
            try:
                return (await client.get(url + "/readyz")).status_code == 200
            except httpx.HTTPError:  # not listening yet
                return False

        await wait_until(ready, f"{url}/readyz to answer 200", timeout, every=0.05)
