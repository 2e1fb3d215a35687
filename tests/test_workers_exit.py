"""``menteo-realtime serve --workers N`` ends like a single process (docs/deploy.md, "Restarts
and shutdown"): after SIGTERM it exits with SIGTERM's status (143 in a shell), so a
supervisor tells a requested stop from a crash the same way whatever the worker count."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from menteo_testkit.ports import free_port
from tests.backends import make_backend
from tests.servers import process_env, wait_ready

pytestmark = pytest.mark.slow


async def test_serve_with_workers_exits_with_sigterms_status(tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)  # --workers needs Redis
    port = free_port()
    env = {**os.environ, **process_env(backend), "PYTHONUNBUFFERED": "1"}
    # A release's steps: migrate, then start the processes.
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "realtime.cli", "migrate"], env=env, check=True
    )
    command = [sys.executable, "-m", "realtime.cli", "serve", "--workers", "2"]
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [*command, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}", timeout=30)
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        code = await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    errors = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert code == -signal.SIGTERM, f"exit status {code}, not SIGTERM's:\n{errors[-2000:]}"
