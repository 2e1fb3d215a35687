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
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from menteo_testkit.faultproxy import FaultProxy
from menteo_testkit.ports import free_port
from menteo_testkit.server import Server, child_env
from menteo_testkit.tokens import SECRET
from tests.backends import make_backend
from tests.ci import one_worker_at_a_time, skip_or_fail
from tests.servers import ServerProcess, make_settings, process_env, run_server

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


def _restarts(server: Server) -> dict[str, Callable[[], Awaitable[None]]]:
    """``POST /kill`` (SIGKILL), ``/start`` (until ready), ``/restart`` (SIGTERM, start)."""

    async def kill() -> None:
        server.kill()

    async def restart() -> None:
        await server.stop()
        await server.start()

    return {"kill": kill, "start": server.start, "restart": restart}


async def _control(
    actions: dict[str, Callable[[], Awaitable[None]]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """``POST /<action>``: runs it, then answers 200 (404 for one it does not know)."""
    try:
        request = (await reader.readline()).decode().split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers
        action = actions.get(request[1].strip("/") if len(request) > 1 else "")
        status = "200 OK"
        if action is not None:
            await action()
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
    args = [str(sdk_installed / "scripts" / "run-tests.mjs")]
    code, report = await _node(args, sdk_server.url, _restarts(sdk_server))
    assert code == 0, report[-12000:] + "\n--- server log ---\n" + sdk_server.log_tail(40)
    assert "# fail 0" in report and "# skipped 0" in report, report[-3000:]


async def _node(
    args: list[str], url: str, actions: dict[str, Callable[[], Awaitable[None]]]
) -> tuple[int | None, str]:
    """Node on ``args`` (in clients/js) against the server at ``url``, with a control
    endpoint for ``actions``: its exit status and its output."""
    control = await asyncio.start_server(lambda r, w: _control(actions, r, w), "127.0.0.1", 0)
    port = control.sockets[0].getsockname()[1]
    env = {
        **child_env({}),
        "MENTEO_SDK_URL": url,
        "MENTEO_SDK_SECRET": SECRET,
        "MENTEO_SDK_CONTROL": f"http://127.0.0.1:{port}",
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            "node",
            *args,
            cwd=SDK,
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
    return proc.returncode, out.decode()


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_the_sdk_room_client_takes_the_hand_off(sdk_installed: Path, tmp_path: Path) -> None:
    """clients/js/test/handoff/: two processes (one Redis) behind a balancer; the node test's
    ``rolling`` takes A out of the balancer and sends it SIGTERM, and the SDK's room clients
    move to B before A closes their sockets (A's log: none closed 1012 at its deadline)."""
    backend = await make_backend("postgres+redis", tmp_path)
    env = process_env(backend, MENTEO_DRAIN_HANDOFF="10", MENTEO_DRAIN_RATE="10")
    a, b = ServerProcess(env, port=free_port()), ServerProcess(env)
    balancer = FaultProxy(a.port)
    try:
        await a.start()
        await b.start()
        await balancer.start()

        async def rolling() -> None:
            balancer.upstream_port = b.port  # new connections go to B from now on
            assert a.proc is not None
            a.proc.send_signal(signal.SIGTERM)

        flags = ["--experimental-websocket"] if _node_major() < 22 else []
        args = [*flags, "--test", str(SDK / "test" / "handoff" / "rolling.test.mjs")]
        url = f"http://127.0.0.1:{balancer.port}"
        code, report = await _node(args, url, {"rolling": rolling})
        assert code == 0 and "# pass 1" in report, report[-6000:] + "".join(a.output[-15:])
        assert await a.stop(timeout=30) in (0, -signal.SIGTERM)
        assert any("2 handed off (0 of them closed 1012" in line for line in a.output), a.output
    finally:
        await balancer.close()
        a.kill()
        b.kill()


def _node_major() -> int:
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.strip().lstrip("v").split(".")[0])


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
