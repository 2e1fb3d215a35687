"""The JavaScript SDK (clients/js, ``@menteo/realtime-client``) against a live server: node's
own test runner runs ``clients/js/test/`` with the server's URL and secret in its
environment, and a control endpoint through which a test kills and restarts the server (the
reconnect that loses nothing and duplicates nothing). Also: the checked-in type declarations
(``clients/js/types``) are what ``tsc`` makes of the sources now.

The server is a real process (menteo_testkit) on SQLite, restarted on the same file and port.
Needs node and npm (skipped without them, failed on CI)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from menteo_testkit.ports import free_port
from menteo_testkit.server import Server, child_env
from menteo_testkit.tokens import SECRET
from tests.backends import make_backend
from tests.ci import one_worker_at_a_time, skip_or_fail
from tests.servers import make_settings, run_server

SDK = Path(__file__).resolve().parent.parent / "clients" / "js"
NODE_TIMEOUT = 300.0  # seconds for the whole node suite


@pytest.fixture(scope="session")
def sdk_installed() -> Path:
    """clients/js with its dev dependencies (``npm ci`` when they are missing or older than
    the lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip_or_fail("node/npm not found: the JavaScript SDK's tests cannot run")
    marker = SDK / "node_modules" / ".package-lock.json"
    lock = SDK / "package-lock.json"
    with one_worker_at_a_time(SDK):
        if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
            return SDK
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=SDK,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return SDK


@pytest.fixture
async def sdk_server(tmp_path: Path) -> AsyncIterator[Server]:
    settings = {
        "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}",
        "MENTEO_SECRET": SECRET,
        "MENTEO_AUTO_MIGRATE": "1",
        "MENTEO_PRESENCE_GRACE": "0.5",
        "MENTEO_FEED_POST_BURST": "100",
        "MENTEO_FEED_POST_RATE_PER_SECOND": "100",
    }
    server = Server(free_port(), None, tmp_path / "server.log", name="sdk", env=child_env(settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _control(
    server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """``POST /kill`` (SIGKILL), ``/start`` (until ready), ``/restart`` (SIGTERM, start)."""
    try:
        request = (await reader.readline()).decode().split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers
        action = request[1].strip("/") if len(request) > 1 else ""
        status = "200 OK"
        if action == "kill":
            server.kill()
        elif action == "start":
            await server.start()
        elif action == "restart":
            await server.stop()
            await server.start()
        else:
            status = "404 Not Found"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_the_sdk_suite_passes_against_a_live_server(
    sdk_installed: Path, sdk_server: Server
) -> None:
    control = await asyncio.start_server(lambda r, w: _control(sdk_server, r, w), "127.0.0.1", 0)
    port = control.sockets[0].getsockname()[1]
    env = {
        **child_env({}),
        "MENTEO_SDK_URL": sdk_server.url,
        "MENTEO_SDK_SECRET": SECRET,
        "MENTEO_SDK_CONTROL": f"http://127.0.0.1:{port}",
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(sdk_installed / "scripts" / "run-tests.mjs"),
            cwd=sdk_installed,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            pytest.fail("the node suite did not finish in time:\n" + out.decode()[-6000:])
    finally:
        control.close()
        await control.wait_closed()
    report = out.decode()
    assert proc.returncode == 0, (
        report[-12000:] + "\n--- server log ---\n" + sdk_server.log_tail(40)
    )
    assert "# fail 0" in report and "# skipped 0" in report, report[-3000:]


def test_the_checked_in_type_declarations_are_current(sdk_installed: Path) -> None:
    done = subprocess.run(
        ["node", "scripts/check-types.mjs"],
        cwd=sdk_installed,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_server_serves_the_sdk_modules_the_pages_import(tmp_path: Path) -> None:
    """/sdk/ is clients/js/src, as JavaScript modules (a page imports them without a build);
    nothing outside it is reachable through it."""
    backend = await make_backend("sqlite", tmp_path)
    async with run_server(make_settings(backend)) as running, httpx.AsyncClient() as http:
        for name in ("index.js", "room.js", "token.js", "feed.js", "notes.js"):
            resp = await http.get(f"{running.url}/sdk/{name}")
            assert resp.status_code == 200, name
            assert resp.headers["content-type"].startswith("text/javascript"), resp.headers
            assert resp.text == (SDK / "src" / name).read_text()
        page = await http.get(f"{running.url}/js/main.js")
        assert 'from "../sdk/room.js"' in page.text
        for outside in (
            "/sdk/../package.json",
            "/sdk/%2e%2e/package.json",
            "/sdk/../test/helpers.mjs",
        ):
            resp = await http.get(running.url + outside)
            assert "devDependencies" not in resp.text and "MENTEO_SDK_SECRET" not in resp.text
