"""``menteo-realtime serve`` raises its own soft open-files limit to the hard limit at start
(docs/deploy.md, "Open files and kernel settings"): every socket is a file descriptor, and a
shell's soft default (often 1,024) would refuse sockets long before memory runs out."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from menteo_testkit.ports import free_port
from tests.backends import Backend
from tests.servers import process_env, wait_ready

LOW = 256  # the soft limit the server is started with


def open_files_limits(pid: int) -> tuple[str, str]:
    """(soft, hard) of ``pid``'s "Max open files" in /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no Max open files line")


def nr_open() -> str:
    return Path("/proc/sys/fs/nr_open").read_text().strip()


def low_soft_limit() -> None:  # runs in the child before exec
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))


async def test_serve_raises_its_soft_open_files_limit_to_the_hard_limit(
    backend: Backend,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= LOW:
        pytest.skip(f"the hard open-files limit here is {hard}: nothing to raise")
    port = free_port()
    env = {**os.environ, **process_env(backend), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "realtime.cli", "serve", "--port", str(port)]
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [*command, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=low_soft_limit,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}", timeout=30)
        soft, hard_seen = open_files_limits(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
    expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert hard_seen == expected
    if hard == resource.RLIM_INFINITY:  # raised to the kernel's per-process ceiling
        assert soft == nr_open()
    else:
        assert soft == str(hard), f"soft limit {soft}, hard {hard_seen}: not raised"
