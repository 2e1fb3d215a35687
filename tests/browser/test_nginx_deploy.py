"""docs/deploy.md's nginx configuration, run for real: Debian's nginx with the documented
block (only ports, paths and upstream addresses changed, taken from the doc itself, so doc
and test cannot drift) in front of two ``menteo-realtime serve`` processes on Redis and
PostgreSQL. A real Chromium page goes Live through it and chats both ways; the event
stream is unbuffered; a SIGTERM of one process under load loses nothing (sent = acked =
stored, every socket gap-free); and no token reaches nginx's logs.

nginx runs as this test's own process on loopback ports, its pid, logs and temporary files
in tmp_path. Without nginx or openssl the test skips (fails on CI: .ci/run installs them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from playwright.async_api import expect

from menteo_testkit.ports import free_port
from tests.backends import make_backend
from tests.browser.roompage import DESKTOP, TIMEOUT_MS, RoomPage
from tests.ci import skip_or_fail
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi
from tests.servers import SECRET, ServerProcess, process_env
from tests.talker import Progress, Talker

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

USERS = ("ana", "ben", "cy", "u1", "u2", "u3", "u4")
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy.md"
TIMEOUT = 15.0

# What Debian's /etc/nginx/nginx.conf puts around conf.d/*.conf (the documented block goes
# inside http {}), with this test's own pid, log and temporary paths.
MAIN_CONF = """\
{user}pid {tmp}/nginx.pid;
error_log {logs}/error.log;
daemon off;
worker_processes 1;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    {mime}default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
    access_log {logs}/access.log;
    gzip on;
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    include {tmp}/conf.d/menteo.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if found is None or shutil.which("openssl") is None:
        skip_or_fail(
            "the nginx deployment test needs Debian's nginx and openssl "
            "(apt-get install nginx-light openssl)"
        )
    return found


def documented_block() -> str:
    """The ```nginx block of deploy.md's reverse proxy section."""
    text = DEPLOY.read_text(encoding="utf-8")
    start = text.index("## A reverse proxy (nginx)")
    match = re.compile(r"^```nginx\n(.*?)^```$", re.M | re.S).search(text, start)
    assert match, "no ```nginx block in deploy.md's reverse proxy section"
    return match.group(1)


def substitute(text: str, pattern: str, replacement: str) -> str:
    result, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count >= 1, f"deploy.md's nginx block has no {pattern!r} any more: update this test"
    return result


def deployable(block: str, *, port: int, upstreams: list[int], tmp: Path) -> str:
    """The documented block with only ports, paths and upstream addresses changed."""
    servers = re.findall(r"^(\s*)server 127\.0\.0\.1:\d+( [^;\n]*)?;$", block, re.M)
    assert servers, "deploy.md's upstream lists no server 127.0.0.1:PORT"
    indent, params = servers[0]
    ours = "".join(f"{indent}server 127.0.0.1:{p}{params};\n" for p in upstreams)
    text = re.sub(r"(^\s*server 127\.0\.0\.1:\d+[^;\n]*;\n)+", lambda _: ours, block, flags=re.M)
    text = substitute(text, r"listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    text = substitute(text, r"(ssl_certificate\s+)\S+;", rf"\g<1>{tmp}/cert.pem;")
    text = substitute(text, r"(ssl_certificate_key\s+)\S+;", rf"\g<1>{tmp}/key.pem;")
    return substitute(text, r"/var/log/nginx/", f"{tmp}/logs/")


def make_certificate(tmp: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1, and a client context that trusts it."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    return context


@dataclass
class Nginx:
    url: str  # https://127.0.0.1:PORT
    logs: Path
    tls: ssl.SSLContext

    @property
    def wss(self) -> str:
        return self.url.replace("https://", "wss://")

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.iterdir()))


def configure(tmp: Path, upstreams: list[int]) -> tuple[list[str], int, ssl.SSLContext]:
    """Write nginx.conf around the documented block, check it with ``nginx -t``: the
    command that runs it, its port, and a TLS context that trusts its certificate."""
    binary = nginx_binary()
    for name in ("logs", "conf.d", "temp"):
        (tmp / name).mkdir(parents=True)
    tls = make_certificate(tmp)
    port = free_port()
    while port in upstreams:  # free_port() may give a port twice: never nginx's own upstream
        port = free_port()
    (tmp / "conf.d" / "menteo.conf").write_text(
        deployable(documented_block(), port=port, upstreams=upstreams, tmp=tmp)
    )
    mime = Path("/etc/nginx/mime.types")
    main = MAIN_CONF.format(
        tmp=tmp,
        logs=tmp / "logs",
        # A master started as root hands requests to workers of this user; not as root:
        # the workers are this process's user anyway.
        user="user root;\n" if os.geteuid() == 0 else "",
        mime=f"include {mime};\n    " if mime.exists() else "",
    )
    (tmp / "nginx.conf").write_text(main)
    command = [binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "logs/e.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert not re.search(r"\[(warn|emerg|alert|crit)\]", checked.stderr), checked.stderr
    return command, port, tls


@contextlib.asynccontextmanager
async def nginx_in_front(tmp: Path, upstreams: list[int]) -> AsyncIterator[Nginx]:
    command, port, tls = configure(tmp, upstreams)
    proc = await asyncio.to_thread(  # fork and exec off the event loop
        subprocess.Popen, command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    running = Nginx(f"https://127.0.0.1:{port}", tmp / "logs", tls)
    try:
        # Up when it answers /metrics itself (403): no request reaches an upstream yet.
        async with httpx.AsyncClient(verify=tls) as http, asyncio.timeout(TIMEOUT):
            while True:
                assert proc.poll() is None, proc.communicate()[0].decode()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(running.url + "/metrics")).status_code == 403:
                        break
                await asyncio.sleep(0.05)  # nginx starting: the retry's pace
        yield running
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, logs are flushed
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), TIMEOUT)
        except TimeoutError:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def token(user: str, role: str | None = None) -> str:
    from realtime.auth import issue_token

    return issue_token(SECRET, user, user.title(), role=role)


async def stream_event(nginx: Nginx, query: str, post: Any) -> list[str]:
    """Open an event stream through nginx, make an event happen (``post()``) and return
    the stream's lines up to it: it must come while the stream is still open."""
    lines: list[str] = []
    async with (
        httpx.AsyncClient(verify=nginx.tls, timeout=TIMEOUT) as http,
        http.stream("GET", f"{nginx.url}/feed/stream?{query}") as resp,
    ):
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        reading = aiter(resp.aiter_lines())
        async with asyncio.timeout(TIMEOUT):
            while (line := await anext(reading)) != "event: welcome":
                lines.append(line)
            lines.append(line)
            await post()
            while (line := await anext(reading)) != "event: feed.post":
                lines.append(line)
            lines.append(line)
            lines.append(await anext(reading))  # its data
    return lines


async def stored_ids(url: str, room_id: str) -> list[str]:
    """Every stored message's id, oldest first, read from one process over REST."""
    headers = {"authorization": "Bearer " + token("backend", "service")}
    messages: list[dict[str, Any]] = []
    before = ""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=TIMEOUT) as http:
        while True:
            page = (await http.get(f"/api/rooms/{room_id}/messages?limit=100{before}")).json()
            messages = page["messages"] + messages
            if not page["has_more"]:
                break
            before = f"&before={page['messages'][0]['seq']}"
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1)), "a hole"
    return [m["id"] for m in messages]


async def test_the_documented_nginx_serves_browsers_and_a_rolling_restart(
    browser: Browser, tmp_path: Path
) -> None:
    nginx_binary()  # skip (or fail on CI) before starting anything
    backend = await make_backend("postgres+redis", tmp_path)
    limits = ("RATE_PER_SECOND", "RATE_BURST", "USER_RATE_PER_SECOND", "USER_RATE_BURST")
    rates = {f"MENTEO_{k}": "500" for k in limits}
    env = process_env(backend, **rates)
    a = ServerProcess(env)
    await a.start()  # creates the schema before the second process starts
    b = ServerProcess(env)
    await b.start()
    # First in the upstream, a process that is gone: nginx's first request goes there (a
    # page's link, its token in the URL), fails over, and is logged by the error log below
    # crit with its whole request line.
    gone = free_port()
    tokens = {user: token(user) for user in USERS}
    try:
        async with nginx_in_front(tmp_path / "nginx", [gone, a.port, b.port]) as nginx:
            await through(nginx, browser, a, b, tokens)
            written = nginx.log_text()
    finally:
        a.kill()
        b.kill()
    # No token reached nginx's logs, though the page's link, an older client and the event
    # stream put theirs in URLs, and a process was gone and another died under them.
    assert "/rooms/" in written and "/feed/stream" in written, "the access log is not written"
    assert re.search(rf"upstream=127\.0\.0\.1:{gone}, ", written), "no failover logged"
    for user, value in tokens.items():
        assert value not in written, f"{user}'s token is in nginx's logs"
    assert "token=" not in written


async def through(
    nginx: Nginx, browser: Browser, a: ServerProcess, b: ServerProcess, tokens: dict[str, str]
) -> None:
    service = {"authorization": "Bearer " + token("backend", "service")}
    members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    room = await create_room(a.url, service, members, title="Through nginx")

    # A real page through nginx (Host with its port passed on: the origin check holds).
    context = await browser.new_context(**DESKTOP, ignore_https_errors=True)
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    try:
        page = RoomPage(await context.new_page())
        page.page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.watch()
        await page.page.goto(f"{nginx.url}/?room={room['id']}&token={tokens['ana']}")
        await page.wait_state("live")
        assert all("token" not in url for url in page.sockets), page.sockets

        # Health and metrics: public /healthz, /readyz for the balancer only, no /metrics.
        async with httpx.AsyncClient(base_url=nginx.url, verify=nginx.tls) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 403
            assert (await http.get("/metrics")).status_code == 403

        # Chat both ways, with an older client that puts its token in the URL.
        ben = await RoomClient.connect(nginx.wss, room["id"], tokens["ben"], ssl=nginx.tls)
        await page.say("hello through nginx")
        heard = await ben.recv_until(lambda f: f["type"] == "chat.message")
        assert heard["body"] == "hello through nginx"
        await ben.chat("b-1", "hello back")
        await expect(page.message("hello back")).to_be_visible()

        # The event stream, unbuffered: the event arrives while the stream is open.
        await event_stream_through(nginx, a, tokens["cy"])

        # A SIGTERM of one process under load.
        await rolling_restart(nginx, a, b, tokens, service)

        # The page is Live again (on the other process) and chats both ways.
        await page.wait_state("live")
        ben = await RoomClient.connect(nginx.wss, room["id"], tokens["ben"], ssl=nginx.tls)
        await page.say("after the restart")
        heard = await ben.recv_until(
            lambda f: f["type"] == "chat.message" and f["body"] == "after the restart"
        )
        await ben.chat("b-2", "still here")
        await expect(page.message("still here")).to_be_visible()
        assert await page.bodies() == [
            "hello through nginx",
            "hello back",
            "after the restart",
            "still here",
        ]
    finally:
        await context.close()
    assert not errors, errors


async def event_stream_through(nginx: Nginx, a: ServerProcess, cy_token: str) -> None:
    community = await FeedApi(a.url, token("backend", "service")).community()
    owner = FeedApi(a.url, cy_token)
    thread = await owner.thread(community)

    async def post() -> None:
        await owner.post(thread, "streamed through nginx")

    lines = await stream_event(nginx, f"community={community}&token={cy_token}", post)
    data = orjson.loads(lines[-1].removeprefix("data: "))
    assert data["type"] == "feed.post" and data["post"]["body"] == "streamed through nginx"


async def rolling_restart(
    nginx: Nginx,
    a: ServerProcess,
    b: ServerProcess,
    tokens: dict[str, str],
    service: dict[str, str],
) -> None:
    progress = Progress()
    rooms = []
    talkers: list[Talker] = []
    for pair in (("u1", "u2"), ("u3", "u4")):
        members = [(u, u.title(), "mentee") for u in pair]
        room = await create_room(b.url, service, members, title="Load")
        rooms.append((room["id"], pair))
        for user in pair:
            url = f"{nginx.wss}/rooms/{room['id']}/ws"
            talkers.append(Talker(user, url, tokens[user], nginx.tls, progress, pace=0.02))
    stop = asyncio.Event()
    talking = [asyncio.create_task(t.talk(stop)) for t in talkers]
    try:
        await progress.until(
            lambda: all(len(t.acked) >= 40 for t in talkers), "every talker acked 40 times"
        )
        before = {t.name: len(t.acked) for t in talkers}
        assert await a.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        await progress.until(
            lambda: all(len(t.acked) >= before[t.name] + 60 for t in talkers),
            "every talker acked 60 more after the SIGTERM",
        )
        stop.set()
        await asyncio.wait_for(asyncio.gather(*talking), 30)
    finally:
        stop.set()
        for task in talking:
            task.cancel()
        await asyncio.gather(*talking, return_exceptions=True)

    assert any(1012 in t.closes for t in talkers), "no socket was on the stopped process"
    for room_id, pair in rooms:
        mine = [t for t in talkers if t.name in pair]
        stored = await stored_ids(b.url, room_id)
        sent = set().union(*(t.sent for t in mine))
        assert len(stored) == len(set(stored)), "a message stored twice"
        assert set(stored) == sent, "sent and stored differ"
        for talker in mine:
            assert set(talker.acked) == talker.sent, f"{talker.name}: not every send acked"
            await talker.catch_up(len(stored))
            assert talker.received == list(range(1, len(stored) + 1)), talker.name
