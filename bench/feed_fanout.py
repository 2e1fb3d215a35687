"""Feed fan-out: N followers of one community (half Server-Sent Events, half WebSocket), one
post at a time, and how long until every follower has it.

Starts ``menteo-realtime serve`` itself on a fresh database (SQLite by default), creates a
community and a thread over REST, connects the followers over loopback (at most
``--connect-concurrency`` handshakes at a time), then makes ``--posts`` posts one after the
other: each post is timed from just before its ``POST`` is sent to the moment each follower's
socket delivers the bytes that carry it, and the next post waits until every follower has
the previous one. Prints a Markdown table row and JSON.

    python bench/feed_fanout.py --followers 1000 --posts 20

The followers are light ``asyncio.Protocol`` clients (a minimal WebSocket client and a raw
HTTP/1.1 event-stream reader) that look for the post's unique body in the raw bytes, so the
load generator spends microseconds per delivery and is not what is measured. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx
from feed_report import TABLE_HEADER, Measured, Sample, ms, pct, summarise, table_row

from menteo_testkit.database import reset_schema
from menteo_testkit.ports import free_port
from menteo_testkit.procstat import CLK_TCK, machine_ticks
from menteo_testkit.server import Server, child_env
from menteo_testkit.tokens import token

MASK = b"\x00\x00\x00\x00"  # client frames must be masked; a zero key leaves them as they are


# Followers --------------------------------------------------------------------------------


class Follower(asyncio.Protocol):
    """Waits for the welcome, then records when the bytes carrying ``expect`` arrive."""

    kind = ""

    def __init__(self, host: str, port: int, query: str, round_: Round) -> None:
        self.host, self.port, self.query = host, port, query
        self.round = round_
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.head = bytearray()  # the response head, until it is complete
        self.upgraded = False
        self.tail = b""  # the last bytes seen, for a marker split across reads
        self.got: set[bytes] = set()
        self.frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.write(self.request())

    def request(self) -> bytes:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.head[: self.head.find(b"\r\n")])
            if b" 101 " not in status and b" 200 " not in status:
                self._fail(RuntimeError(f"{self.kind} refused: {status.decode(errors='replace')}"))
                return
            self.upgraded = True
            data = bytes(self.head[end + 4 :])
            self.head.clear()
        if data:
            self.body(data)

    def body(self, data: bytes) -> None:
        raise NotImplementedError

    def seen(self, data: bytes) -> None:
        """Bytes of the feed arrived: the welcome, or (maybe) the post being timed."""
        now = time.monotonic()
        window = self.tail + data
        if not self.ready.done() and b'"welcome"' in window:
            self.ready.set_result(None)
        marker = self.round.marker
        if marker is not None and marker not in self.got and marker in window:
            self.got.add(marker)
            self.round.arrived(now, self.kind)
        self.tail = window[-64:]

    def _fail(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the welcome"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.round.lost += 1


class SSEFollower(Follower):
    """``GET /feed/stream``: HTTP/1.1, chunked; the markers are found in the raw bytes."""

    kind = "sse"

    def request(self) -> bytes:
        return (
            f"GET /feed/stream?{self.query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

    def body(self, data: bytes) -> None:
        self.frames += data.count(b"\n\n")
        self.seen(data)


class WSFollower(Follower):
    """``GET /feed/ws``: a minimal RFC 6455 client (no extensions); answers pings."""

    kind = "ws"

    def __init__(self, host: str, port: int, query: str, round_: Round) -> None:
        super().__init__(host, port, query, round_)
        self.buffer = bytearray()

    def request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET /feed/ws?{self.query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def body(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= 2:
            opcode, length, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            if opcode in (0, 1, 2):
                self.frames += 1
                self.seen(payload)
            elif opcode == 9 and self.transport is not None:  # ping: pong with its payload
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + MASK + payload)
            elif opcode == 8 and self.transport is not None:
                self.transport.close()


class Round:
    """One post: its marker, and when each follower had it."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.marker: bytes | None = None
        self.sent_at = 0.0
        self.times: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self.done = asyncio.Event()
        self.lost = 0

    def start(self, marker: bytes) -> None:
        self.marker = marker
        self.times = []
        self.by_kind = {}
        self.done.clear()
        self.sent_at = time.monotonic()

    def arrived(self, now: float, kind: str) -> None:
        self.times.append(now - self.sent_at)
        self.by_kind.setdefault(kind, []).append(now - self.sent_at)
        if len(self.times) >= self.expected:
            self.done.set()


# Servers ----------------------------------------------------------------------------------


def start_server(env: dict[str, str], log_path: Path, cpus: str | None) -> Server:
    server = Server(free_port(), None, log_path, env=env, cpus=cpus)
    server.spawn()
    return server


# The run ----------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores), from /proc/stat."""
    return machine_ticks()[0] / CLK_TCK


async def feed_counters(http: httpx.AsyncClient, servers: list[Server]) -> dict[str, float]:
    """The servers' own fan-out counters from /metrics, summed over processes."""
    totals: dict[str, float] = {}
    for server in servers:
        text = (await http.get(server.http + "/metrics")).text
        for line in text.splitlines():
            if line.startswith("menteo_feed_"):
                name, _, value = line.partition(" ")
                totals[name] = totals.get(name, 0.0) + float(value)
    return totals


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    tmp = Path(opts.tmpdir or tempfile.mkdtemp(prefix="menteo-feed-bench-"))
    database_url = opts.database_url or f"sqlite+aiosqlite:///{tmp / 'feed.db'}"
    if database_url.startswith("postgresql"):
        await reset_schema(database_url)
    if opts.processes > 1 and not opts.redis_url:
        raise SystemExit("--processes > 1 needs --redis-url")
    env = child_env(
        {
            "MENTEO_SECRET": secret,
            "MENTEO_DATABASE_URL": database_url,
            "MENTEO_REDIS_URL": opts.redis_url or "",
            "MENTEO_AUTO_MIGRATE": "1",
            "MENTEO_MAX_CONNECTIONS_PER_IP": "1000000",
            "MENTEO_FEED_POST_RATE_PER_SECOND": "0",  # the limiter is policy, not what is measured
        }
    )
    # A core for the server(s), another for this load generator (as bench/chat_load.py does).
    pin = (
        not opts.no_pin
        and shutil.which("taskset") is not None
        and len(os.sched_getaffinity(0)) >= 2
    )
    servers: list[Server] = []
    try:
        for i in range(opts.processes):
            server = start_server(env, tmp / f"server-{i}.log", opts.server_cpus if pin else None)
            servers.append(server)
            await server.wait_ready_async()  # the first creates the schema before the others start
        if pin:
            os.sched_setaffinity(0, {opts.client_cpu})
        return await measure(opts, servers, secret, pin)
    finally:
        for server in servers:
            server.terminate(20)


async def open_thread(http: httpx.AsyncClient, secret: str) -> tuple[str, str]:
    """A community and a thread in it: (community id, thread id)."""
    service = token(secret, "bench", "Bench", role="service", ttl=3600)
    author = token(secret, "author", "Author", ttl=3600)
    resp = await http.post(
        "/api/communities", json={"name": "Bench"}, headers={"authorization": f"Bearer {service}"}
    )
    resp.raise_for_status()
    community = resp.json()["id"]
    resp = await http.post(
        "/api/threads",
        json={"title": "Fan-out", "community_id": community},
        headers={"authorization": f"Bearer {author}"},
    )
    resp.raise_for_status()
    return community, resp.json()["id"]


async def connect_followers(
    opts: argparse.Namespace,
    servers: list[Server],
    secret: str,
    community: str,
    round_: Round,
    sse_count: int,
) -> list[Follower]:
    loop = asyncio.get_running_loop()
    followers: list[Follower] = []
    gate = asyncio.Semaphore(opts.connect_concurrency)

    async def connect(i: int) -> None:
        server = servers[i % len(servers)]
        bearer = token(secret, f"f{i}", f"Follower {i}", ttl=3600)
        query = f"token={bearer}&community={community}"
        cls = SSEFollower if i < sse_count else WSFollower
        async with gate:
            _, follower = await loop.create_connection(
                lambda: cls("127.0.0.1", server.port, query, round_), "127.0.0.1", server.port
            )
            await asyncio.wait_for(follower.ready, 30)
        followers.append(follower)

    # Interleave the kinds so neither gets the head of the queue.
    order = sorted(range(opts.followers), key=lambda i: (i % 2, i))
    await asyncio.gather(*(connect(i) for i in order))
    return followers


async def sample_start(http: httpx.AsyncClient, servers: list[Server]) -> Sample:
    counters = await feed_counters(http, servers)
    return Sample(
        counters,
        [s.cpu_seconds() or 0.0 for s in servers],
        machine_busy_seconds(),
        resource.getrusage(resource.RUSAGE_SELF),
        time.monotonic(),
    )


async def sample_end(http: httpx.AsyncClient, servers: list[Server]) -> Sample:
    """As ``sample_start``, read in the reverse order: the interval is the posts alone."""
    wall = time.monotonic()
    client = resource.getrusage(resource.RUSAGE_SELF)
    cpu = [s.cpu_seconds() or 0.0 for s in servers]
    machine = machine_busy_seconds()
    return Sample(await feed_counters(http, servers), cpu, machine, client, wall)


async def post_rounds(
    opts: argparse.Namespace, http: httpx.AsyncClient, thread: str, secret: str, round_: Round
) -> list[dict[str, Any]]:
    """One post at a time, each timed until every follower has it (or ``--timeout``)."""
    headers = {"authorization": f"Bearer {token(secret, 'author', 'Author', ttl=3600)}"}
    rounds: list[dict[str, Any]] = []
    for n in range(opts.posts):
        marker = f"bench-{n}-{secrets.token_hex(8)}"
        round_.start(marker.encode())
        resp = await http.post(
            f"/api/threads/{thread}/posts", json={"body": marker}, headers=headers
        )
        acked = time.monotonic() - round_.sent_at
        resp.raise_for_status()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(round_.done.wait(), opts.timeout)
        times = list(round_.times)
        rounds.append(
            {
                "ack_ms": ms(acked),
                "received": len(times),
                "first_ms": ms(min(times)) if times else None,
                "p50_ms": ms(pct(times, 0.50)),
                "p99_ms": ms(pct(times, 0.99)),
                "last_ms": ms(max(times)) if times else None,
                # first to last follower: the fan-out alone, without the commit before it
                "spread_ms": ms(max(times) - min(times)) if times else None,
                "last_by_kind_ms": {k: ms(max(v)) for k, v in round_.by_kind.items()},
                "all": times,
            }
        )
        await asyncio.sleep(opts.pause)  # let the previous post's traffic settle
    return rounds


async def measure(
    opts: argparse.Namespace, servers: list[Server], secret: str, pinned: bool
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=servers[0].http, timeout=30) as http:
        community, thread = await open_thread(http, secret)
        round_ = Round(opts.followers)
        sse_count = round(opts.followers * opts.sse_share)
        connect_started = time.monotonic()
        followers = await connect_followers(opts, servers, secret, community, round_, sse_count)
        connect_seconds = time.monotonic() - connect_started
        before = await sample_start(http, servers)
        rounds = await post_rounds(opts, http, thread, secret, round_)
        after = await sample_end(http, servers)
        lost = round_.lost
        for follower in followers:
            if follower.transport is not None:
                follower.transport.close()
    measured = Measured(sse_count, connect_seconds, rounds, lost, before, after)
    return summarise(opts, pinned, measured)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--followers", type=int, default=1000)
    p.add_argument("--sse-share", type=float, default=0.5, help="share of followers on SSE")
    p.add_argument("--posts", type=int, default=20, help="posts made, one at a time")
    p.add_argument("--pause", type=float, default=0.2, help="seconds between posts")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a post")
    p.add_argument("--connect-concurrency", type=int, default=100)
    p.add_argument("--processes", type=int, default=1, help="server processes (needs Redis)")
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--server-cpus", default="0", help="taskset list for the server(s)")
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--tmpdir", default=None)
    p.add_argument("--json", dest="json_path", default=None, help="also write the JSON here")
    opts = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * opts.followers + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the server inherits it too
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run(opts))
    if opts.json_path:
        Path(opts.json_path).write_text(json.dumps(result, indent=2))
    print(TABLE_HEADER)
    print(table_row(result))
    print(json.dumps(result, indent=2))
    if not result["complete"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
