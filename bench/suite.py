"""One benchmark scenario against one server configuration, side by side with references.

    python bench/suite.py fanout --server raw              # saturation fan-out
    python bench/suite.py fanout --server ours --smoke     # a few seconds, small sizes
    python bench/suite.py --list                           # scenarios and servers

Starts the server configuration itself (pinned with ``taskset`` to --server-cpus), pins
this process (the load generator: one process, one event loop, uvloop) to --client-cpu,
runs the scenario over loopback, stops the server and prints a JSON result (``--json PATH``
writes it too). Every loop is bounded in count and in time. ``bench/run_all.py`` runs the
whole matrix and writes docs/benchmarks.md. Figures only: nothing is asserted.

Scenarios (issue 4 §2), each named for what it measures:
  fanout    20 rooms x 10, 2 senders per room, closed loop, window 4: delivered/s, CPU/delivery
  latency   open loop at 20,000 deliveries/s (2,000 msg/s into rooms of 10): send->receive
            p50/p99/p99.9, and typing -> presence.typing latency from 5 typers per room
  bigroom   5 rooms x 200, 2 senders per room, closed loop
  idle      server RSS per idle socket at 1,000 and 10,000 sockets
  durable   100 rooms x 2, every member sends, closed loop, window 4: acked/s, ack latency
  joinstorm 1,000 clients (100 rooms x 10, 50 messages of history each) connect at once
            (--clients N: N clients)
  manyidle  --sockets idle room sockets on one process (default 15,000; client ports over
            127.0.0.2 and up): RSS per socket, then 1% of rooms chatting: send->receive p99
  pgphases  the fanout shape on --server ours-pg for 200,000 messages (--messages N) in five
            phases: delivered/s and CPU per delivery (ours, PostgreSQL, Redis) per phase, and
            what PostgreSQL's sessions wait on (pg_stat_activity, sampled), commits, WAL syncs
  inbox     1,000 inbox sockets, each user in 5 rooms of two, chat at 1,000 messages/s: commit
            -> inbox.room p50/p99 at every affected inbox (target p99 <= 20 ms, one process)
  feed      bench/feed_fanout.py when present
  notes     bench/notes_compare.py: 50 rooms x 4 editors typing at 5 and 20 updates/s each,
            ours beside @y/websocket-server, Hocuspocus 3 and pycrdt-websocket
scaleout (bench/run_all.py): fanout and latency with --server ours-redis (2 processes on
Redis + PostgreSQL); --server ours-cluster is the same on a private Redis Cluster (3 masters,
3 replicas, menteo_testkit/redis_cluster.py). A comma-separated --server runs each in turn:
``fanout --server ours-redis,ours-cluster`` puts both figures side by side, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from wsclient import WSClient, connect

from menteo_testkit.database import plain_dsn, reset_schema
from menteo_testkit.ports import HOST, free_port
from menteo_testkit.procstat import group_cpu_grown, group_cpu_pids, machine_cpu
from menteo_testkit.redis_cluster import LocalCluster
from menteo_testkit.server import Server, child_env, serve_command
from menteo_testkit.tokens import token

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/menteo_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
BODY = "m" * 64
UNLIMITED = "1000000"
MAX_EVENTS = 50_000_000  # hard cap on frames any loop handles
ROOM_REST_LIMIT = 50  # POST /api/rooms takes at most 50 members; the rest connect as service


def log(msg: str) -> None:
    print(f"[suite] {msg}", file=sys.stderr, flush=True)


# Servers -----------------------------------------------------------------------------------


@dataclass
class ServerSpec:
    name: str
    kind: str  # "menteo", "raw", "socketio" (the wire protocol the load generator speaks)
    label: str
    processes: int = 1
    database: str | None = None  # "sqlite" | "postgres" (ours)
    redis: bool = False
    launcher: str = "uvicorn"  # ours: "uvicorn" or "granian"; socket.io: "python" or "node"
    cluster: bool = False  # redis: a private Redis Cluster instead of --redis-url


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec("raw", "raw", "raw websockets.broadcast (reference)"),
        ServerSpec("socketio", "socketio", "Node socket.io 4 (reference)", launcher="node"),
        ServerSpec("python-socketio", "socketio", "python-socketio (reference)", launcher="python"),
        ServerSpec("ours", "menteo", "ours: 1 process + SQLite", database="sqlite"),
        ServerSpec("ours-pg", "menteo", "ours: 1 process + PostgreSQL", database="postgres"),
        ServerSpec(
            "ours-redis",
            "menteo",
            "ours: 2 processes + Redis + PostgreSQL",
            processes=2,
            database="postgres",
            redis=True,
        ),
        ServerSpec(
            "ours-cluster",
            "menteo",
            "ours: 2 processes + Redis Cluster + PostgreSQL",
            processes=2,
            database="postgres",
            redis=True,
            cluster=True,
        ),
        ServerSpec(
            "python-socketio-redis",
            "socketio",
            "python-socketio: 2 processes + Redis",
            processes=2,
            redis=True,
            launcher="python",
        ),
        ServerSpec(
            "granian",
            "menteo",
            "ours under Granian: 1 process + SQLite",
            database="sqlite",
            launcher="granian",
        ),
        ServerSpec(
            "ours-tracemalloc",
            "menteo",
            "ours under tracemalloc (diagnosis only)",
            database="sqlite",
            launcher="tracemalloc",
        ),
    )
}


REFERENCE = BENCH / "reference"


def node_reference() -> str:
    """``node``, with bench/reference/package.json's pinned packages installed (``npm ci``
    once, from the lock file: the only thing the Node reference servers fetch)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "the Node reference servers need node and npm (apt-get install nodejs npm)"
        )
    lock = REFERENCE / "package-lock.json"
    stamp = REFERENCE / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        log("npm ci in bench/reference (the Node reference servers' pinned packages)")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=REFERENCE,
            check=True,
            timeout=600,
        )
    return node


# Settings added to every server of ours that a run starts (bench/webhook_load.py sets the
# webhook's here to compare fan-out with it on and off).
EXTRA_ENV: dict[str, str] = {}


def unlimited_env() -> dict[str, str]:
    """Every rate limit and per-address cap of ours raised: policies, not what is measured.

    Read from the Settings fields, so a limit added later is raised too."""
    from dataclasses import fields

    from realtime.config import PREFIX, Settings

    out = {}
    for f in fields(Settings):
        name = f.name
        if (
            "rate_per_second" in name
            or name.endswith("_burst")
            or name.startswith("max_conn")
            or name.endswith("_per_ip")
        ):
            out[PREFIX + name.upper()] = UNLIMITED
    return out


class ServerSet:
    """The processes of one configuration, started in order, stopped with SIGTERM."""

    def __init__(
        self, spec: ServerSpec, tmp: Path, cpus: str | None, pg_url: str, redis_url: str
    ) -> None:
        self.spec = spec
        self.tmp = tmp
        self.cpus = cpus
        self.secret = secrets.token_urlsafe(32)
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.procs: list[Server] = []
        self.cluster: LocalCluster | None = None
        self.database_url = (
            pg_url if spec.database == "postgres" else f"sqlite+aiosqlite:///{tmp}/bench.db"
        )

    def env(self) -> dict[str, str]:
        settings: dict[str, str] = {}
        if self.spec.kind == "menteo":
            settings.update(
                {
                    "MENTEO_SECRET": self.secret,
                    "MENTEO_DATABASE_URL": self.database_url,
                    "MENTEO_REDIS_URL": self.redis_url if self.spec.redis else "",
                    "MENTEO_AUTO_MIGRATE": "1",
                }
            )
            settings.update(unlimited_env())
            settings.update(EXTRA_ENV)
            if self.spec.launcher == "tracemalloc":
                settings["MENTEO_BENCH_TRACEMALLOC_OUT"] = os.environ.get(
                    "MENTEO_BENCH_TRACEMALLOC_OUT", str(BENCH / "results" / "tracemalloc.txt")
                )
        return child_env(settings)

    def command(self, port: int) -> list[str]:
        spec = self.spec
        py = sys.executable
        if spec.kind == "raw":
            return [py, str(BENCH / "reference" / "raw_broadcast.py"), "--port", str(port)]
        if spec.kind == "socketio" and spec.launcher == "node":
            script = BENCH / "reference" / "socketio_node.js"
            return [node_reference(), str(script), "--host", HOST, "--port", str(port)]
        if spec.kind == "socketio":
            cmd = [py, str(BENCH / "reference" / "socketio_server.py"), "--port", str(port)]
            return [*cmd, "--redis-url", self.redis_url] if spec.redis else cmd
        if spec.launcher == "granian":
            granian = shutil.which("granian", path=str(Path(py).parent)) or "granian"
            return [
                granian,
                "--interface",
                "asgi",
                "--factory",
                "--host",
                HOST,
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--backlog",
                "2048",
                "--log-level",
                "warning",
                "--no-access-log",
                "realtime.app:app_from_env",
            ]
        if spec.launcher == "tracemalloc":
            return [
                py,
                str(BENCH / "memprofile_server.py"),
                "serve",
                "--host",
                HOST,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        return serve_command(port)

    def start(self) -> None:
        if self.spec.database == "postgres":
            asyncio.run(reset_schema(self.pg_url))
        if self.spec.cluster:
            self.cluster = LocalCluster(self.tmp / "cluster")
            asyncio.run(self.cluster.start())
            self.redis_url = self.cluster.url
        env = self.env()
        probe = "readyz" if self.spec.kind == "menteo" else "tcp"
        for i in range(self.spec.processes):
            port = free_port()
            proc = Server(
                port,
                None,
                self.tmp / f"server-{i}.log",
                name=self.spec.name,
                env=env,
                command=self.command(port),
                cpus=self.cpus,
                probe=probe,
            )
            proc.spawn()
            self.procs.append(proc)
            proc.wait_ready(40.0, every=0.1)

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            proc.send_stop()
        codes = [proc.wait_stopped(15) for proc in self.procs]
        if self.cluster is not None:
            self.cluster.stop()
        return codes

    def cpu(self) -> float:
        return sum(p.tree_cpu_seconds() for p in self.procs)

    def rss_kib(self) -> int:
        return sum(p.tree_rss_kib() for p in self.procs)

    def problems(self) -> list[str]:
        return [line for i, p in enumerate(self.procs) for line in p.problems(f"[{i}] ")][:20]


# Protocol adapters -------------------------------------------------------------------------


class Target:
    """How to reach one kind of server and recognise its frames cheaply (by prefix)."""

    MSG = b'{"type":"chat.message"'
    ACK = b'{"type":"ack"'
    WELCOME = b'{"type":"welcome"'
    TYPING = b'{"type":"presence.typing"'
    ERROR = b'{"type":"error"'

    def __init__(self, servers: ServerSet) -> None:
        self.servers = servers

    async def make_rooms(self, rooms: int, members: int) -> list[str]:
        return [f"r{i}" for i in range(rooms)]

    def path(self, room_id: str, user: str, member_index: int) -> tuple[str, str | None]:
        return f"/rooms/{room_id}/ws?user={user}", None

    def chat(self, cid: str, body: str) -> bytes:
        return b'{"type":"chat.send","id":"%s","body":"%s"}' % (cid.encode(), body.encode())

    def typing(self, active: bool) -> bytes:
        return b'{"type":"typing","active":true}' if active else b'{"type":"typing","active":false}'

    def parse(self, payload: bytes) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(payload)
        return obj

    def control(self, client: WSClient, payload: bytes) -> bool:
        """Transport-level packets (Engine.IO); True when handled."""
        return False


class MenteoTarget(Target):
    async def make_rooms(self, rooms: int, members: int) -> list[str]:
        base = f"http://{HOST}:{self.servers.procs[0].port}"
        service = token(self.servers.secret, "bench", "Bench", role="service", ttl=7200)
        headers = {"authorization": "Bearer " + service}
        gate = asyncio.Semaphore(16)

        async def one(i: int, http: httpx.AsyncClient) -> str:
            body = {
                "title": f"bench {i}",
                "members": [
                    {
                        "user_id": f"u{i}-{j}",
                        "name": f"u{i}-{j}",
                        "role": "mentor" if j == 0 else "mentee",
                    }
                    for j in range(min(members, ROOM_REST_LIMIT))
                ],
            }
            async with gate:
                for attempt in range(5):
                    resp = await http.post(f"{base}/api/rooms", headers=headers, json=body)
                    if resp.status_code == 201:
                        return str(resp.json()["id"])
                    await asyncio.sleep(0.2 * (attempt + 1))
            raise RuntimeError(f"POST /api/rooms: {resp.status_code} {resp.text[:200]}")

        async with httpx.AsyncClient(timeout=60) as http:
            return list(await asyncio.gather(*(one(i, http) for i in range(rooms))))

    def path(self, room_id: str, user: str, member_index: int) -> tuple[str, str | None]:
        role = "service" if member_index >= ROOM_REST_LIMIT else None
        bearer = token(self.servers.secret, user, user, role=role, ttl=7200)
        return f"/rooms/{room_id}/ws?token={bearer}", "menteo.v1.json"


class SocketIOTarget(Target):
    MSG = b'42["chat.message"'
    ACK = b'42["ack"'
    WELCOME = b'42["welcome"'
    TYPING = b'42["presence.typing"'
    ERROR = b"44"

    def path(self, room_id: str, user: str, member_index: int) -> tuple[str, str | None]:
        return "/socket.io/?EIO=4&transport=websocket", None

    def chat(self, cid: str, body: str) -> bytes:
        return b'42["chat.send",{"id":"%s","body":"%s"}]' % (cid.encode(), body.encode())

    def typing(self, active: bool) -> bytes:
        return b'42["typing",{"active":%s}]' % (b"true" if active else b"false")

    def parse(self, payload: bytes) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(payload[2:])[1]
        return obj

    def control(self, client: WSClient, payload: bytes) -> bool:
        if payload == b"2":  # Engine.IO ping
            client.send_text(b"3")
            return True
        if payload[:1] == b"0":  # Engine.IO open: join the namespace with our room and user
            member = client.user
            client.send_text(b"40" + orjson.dumps({"room": member.room_id, "user": member.user}))
            return True
        return payload[:2] == b"40" or payload[:2] == b"41"


def make_target(servers: ServerSet) -> Target:
    kind = servers.spec.kind
    return {"menteo": MenteoTarget, "socketio": SocketIOTarget}.get(kind, Target)(servers)


# Load generator ------------------------------------------------------------------------------


class Load:
    """Counters and hooks shared by every member (one event loop: no locks)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.deliveries = 0
        self.acks = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.other = 0
        self.frames = 0
        self.running = False
        self.measuring = False
        self.window = 0
        # Closed loop: a sender's next message goes when its own chat.message comes back
        # (echo: the message went through the whole fan-out, broker included) or when its
        # ack does (durable append: an ack means committed).
        self.echo = False
        self.body = BODY
        # Latency bookkeeping (open loop and durable only).
        self.track = False
        self.sent_at: dict[str, float] = {}
        self.e2e: list[float] = []
        self.ack_lat: list[float] = []
        self.typing_sent: dict[str, float] = {}
        self.typing_lat: list[float] = []
        self.welcomes = 0
        self.welcome_times: list[float] = []
        self.welcome_history: list[int] = []


class Member:
    __slots__ = (
        "client",
        "index",
        "load",
        "outstanding",
        "room",
        "room_id",
        "sender",
        "sent",
        "tag",
        "user",
        "welcomed",
    )

    def __init__(self, load: Load, room: int, room_id: str, index: int, user: str) -> None:
        self.load = load
        self.room = room
        self.room_id = room_id
        self.index = index
        self.user = user
        self.sender = False
        self.sent = 0
        self.tag = b'"id":"%d-' % index  # in the frames of this member's own messages
        self.outstanding: deque[float] = deque()
        self.client: WSClient | None = None
        self.welcomed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def send_chat(self) -> None:
        load = self.load
        cid = f"{self.index}-{self.sent}"
        self.sent += 1
        now = time.perf_counter()
        self.outstanding.append(now)
        if load.track:
            load.sent_at[cid] = now
        assert self.client is not None
        self.client.send_text(load.target.chat(cid, load.body))

    def on_message(self, client: WSClient, p: bytes) -> None:
        load = self.load
        load.frames += 1
        t = load.target
        if p.startswith(t.MSG):
            load.deliveries += 1
            if load.echo and self.sender and load.running and self.tag in p:
                self.send_chat()  # its own copy came back through the fan-out: next one
            if load.track and load.measuring:
                frame = t.parse(p)
                if frame["author"]["user_id"] != self.user:
                    sent = load.sent_at.get(frame["id"])
                    if sent is not None:
                        load.e2e.append(time.perf_counter() - sent)
        elif p.startswith(t.ACK):
            load.acks += 1
            if self.outstanding:
                sent = self.outstanding.popleft()
                if load.measuring:
                    load.ack_lat.append(time.perf_counter() - sent)
            if load.running and self.sender and load.window and not load.echo:
                self.send_chat()
        elif p.startswith(t.TYPING):
            if load.measuring:
                frame = t.parse(p)
                sent = load.typing_sent.get(frame["user_id"])
                if sent is not None:
                    load.typing_lat.append(time.perf_counter() - sent)
        elif p.startswith(t.WELCOME):
            now = time.perf_counter()
            load.welcomes += 1
            if not self.welcomed.done():
                self.welcomed.set_result(now)
                if len(load.welcome_history) < 5:  # check a few: history arrived
                    load.welcome_history.append(len(t.parse(p).get("history", ())))
        elif p.startswith(t.ERROR):
            load.errors += 1
            if len(load.error_samples) < 3:
                load.error_samples.append(p[:300].decode(errors="replace"))
            if self.outstanding:  # a refused message frees its slot (the error count tells)
                self.outstanding.popleft()
                if load.running and self.sender and load.window:
                    self.send_chat()
        elif not t.control(client, p):
            load.other += 1  # presence.join/leave and the like


async def open_members(
    load: Load,
    servers: ServerSet,
    room_ids: list[str],
    per_room: int,
    *,
    concurrency: int = 64,
    start_index: int = 0,
    room_offset: int = 0,
    timeout: float = 120.0,
    per_source: int = 0,
) -> list[Member]:
    """Connect ``per_room`` members to every room (spread over the processes) and wait for
    each welcome. ``room_offset``: the index of ``room_ids[0]`` among the rooms made (user
    ids are ``u<room>-<j>``, as the rooms were created with)."""
    target = load.target
    gate = asyncio.Semaphore(concurrency)
    members = [
        Member(
            load,
            room_offset + r,
            rid,
            start_index + (room_offset + r) * per_room + j,
            f"u{room_offset + r}-{j}",
        )
        for r, rid in enumerate(room_ids)
        for j in range(per_room)
    ]
    deadline = time.perf_counter() + timeout

    async def one(m: Member) -> None:
        proc = servers.procs[m.index % len(servers.procs)]
        j = int(m.user.rsplit("-", 1)[1])
        path, sub = target.path(m.room_id, m.user, j)
        async with gate:
            for attempt in range(3):
                try:
                    client = await connect(
                        HOST,
                        proc.port,
                        path,
                        m.on_message,
                        subprotocol=sub,
                        timeout=max(1.0, deadline - time.perf_counter()),
                        user=m,
                        local_host=source_address(m.index, per_source),
                    )
                    break
                except (OSError, RuntimeError) as exc:
                    if attempt == 2:
                        raise RuntimeError(f"connect {m.user}: {exc!r}") from exc
                    await asyncio.sleep(0.5)
            m.client = client
            await welcome_of(m, max(1.0, deadline - time.perf_counter()))

    await asyncio.gather(*(one(m) for m in members))
    return members


def source_address(index: int, per_source: int) -> str | None:
    """Client ``index``'s loopback source address when sockets are spread ``per_source`` to
    an address (127.0.0.2 and up; 127.0.0.1 stays the server's): None without spreading."""
    if per_source <= 0:
        return None
    n = index // per_source
    return f"127.0.{n // 254}.{n % 254 + 2}"


async def until(condition: Callable[[], bool], seconds: float, step: float = 0.05) -> bool:
    """Poll ``condition`` every ``step`` for at most ``seconds``."""
    for _ in range(max(1, int(seconds / step))):
        if condition():
            return True
        await asyncio.sleep(step)
    return condition()


async def welcome_of(m: Member, timeout: float) -> float:
    """When ``m`` got its welcome; fails if the server closed the socket first."""
    assert m.client is not None
    done, _ = await asyncio.wait(
        (m.welcomed, m.client.closed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    if m.welcomed in done:
        return m.welcomed.result()
    if m.client.closed in done:
        raise RuntimeError(f"{m.user}: closed with {m.client.close_code} before its welcome")
    raise TimeoutError(f"{m.user}: no welcome in {timeout:.0f} s")


async def close_members(members: list[Member]) -> None:
    for m in members:
        if m.client is not None:
            m.client.close()
    waits = [m.client.closed for m in members if m.client is not None]
    if waits:
        await asyncio.wait(waits, timeout=5)


# Measuring -------------------------------------------------------------------------------------


@dataclass
class Meter:
    """CPU of servers, this process and the machine over the measured interval."""

    servers: ServerSet
    t: float = 0.0
    server: float = 0.0
    client: float = 0.0
    machine: dict[str, float] = field(default_factory=dict)
    groups: dict[int, tuple[str, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.t = time.perf_counter()
        self.server = self.servers.cpu()
        self.client = time.process_time()
        self.machine = machine_cpu()
        self.groups = (
            group_cpu_pids()
            if self.servers.spec.database == "postgres" or self.servers.spec.redis
            else {}
        )

    def stop(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t
        server = (self.servers.cpu() - self.server) / seconds
        client = (time.process_time() - self.client) / seconds
        machine = machine_cpu()
        busy = (machine.get("busy", 0) - self.machine.get("busy", 0)) / seconds
        backend = 0.0
        split: dict[str, float] = {}
        if self.groups:
            grown = group_cpu_grown(self.groups, group_cpu_pids())
            split = {k: v / seconds for k, v in grown.items()}
            backend = sum(split.values())
        cores = [
            round((machine.get(f"cpu{i}", 0) - self.machine.get(f"cpu{i}", 0)) / seconds, 3)
            for i in range(os.cpu_count() or 1)
        ]
        return {
            "seconds": round(seconds, 3),
            "server_cpu": round(server, 3),
            "client_cpu": round(client, 3),
            "backend_cpu": round(backend, 3),
            # Separately, so a figure per delivery can name whose CPU it is (issue 23).
            "pg_cpu": round(split.get("postgres", 0.0), 3),
            "redis_cpu": round(split.get("redis-server", 0.0), 3),
            "other_cpu": round(busy - server - client - backend, 3),
            "core_cpu": cores,
        }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 3)


async def wait_quiet(seconds: float) -> float:
    """Wait (at most ``seconds``) for the machine to be idle before a measurement."""
    deadline = time.monotonic() + seconds
    busy = 0.0
    while True:
        a = machine_cpu().get("busy", 0)
        await asyncio.sleep(0.5)
        busy = (machine_cpu().get("busy", 0) - a) / 0.5
        if busy < 0.3 or time.monotonic() > deadline:
            return round(busy, 2)


# Scenarios -------------------------------------------------------------------------------------


@dataclass
class Params:
    smoke: bool
    warmup: float
    duration: float
    window: int = 4
    rate: float = 20_000.0  # deliveries/s for the latency scenario
    sockets: int = 0  # manyidle: idle sockets (0: the default)
    clients: int = 0  # joinstorm: clients (0: the default, 1,000)
    chat_rate: float = 5.0  # manyidle: messages/s in each chatting room
    per_source: int = 0  # manyidle: client sockets per source address (0: PER_SOURCE)
    messages: int = 0  # pgphases: messages over the five phases (0: the default, 200,000)
    per_room: int = 10  # joinstorm: members per room (2: mostly cold rooms, as in a restart)


async def start_loop(
    servers: ServerSet,
    prm: Params,
    rooms: int,
    per_room: int,
    senders: int | None,
    track_acks: bool,
) -> tuple[Load, list[Member]]:
    """Rooms made, members open, each sender with ``window`` messages in flight."""
    load = Load(make_target(servers))
    load.echo = not track_acks
    room_ids = await load.target.make_rooms(rooms, per_room)
    members = await open_members(load, servers, room_ids, per_room)
    log(f"{len(members)} sockets open in {rooms} rooms")
    for m in members:
        j = int(m.user.rsplit("-", 1)[1])
        m.sender = senders is None or j < senders
    load.window = prm.window
    load.running = True
    for m in members:
        if m.sender:
            for _ in range(prm.window):
                m.send_chat()
    return load, members


async def stop_loop(load: Load, members: list[Member]) -> int:
    """No new sends; every message sent is acked (bounded wait), then close. Returns how
    many were never acked."""
    load.running = False
    await until(lambda: not any(m.outstanding for m in members), 15)
    unacked = sum(len(m.outstanding) for m in members)
    await close_members(members)
    return unacked


def backend_per_delivery(cpu: dict[str, Any], deliveries: int) -> dict[str, Any]:
    """PostgreSQL's and Redis's CPU per delivery (µs), beside the server's own."""
    if not deliveries:
        return {}
    return {
        f"{name}_us_per_delivery": round(
            cpu.get(f"{name}_cpu", 0.0) * cpu["seconds"] / deliveries * 1e6, 2
        )
        for name in ("pg", "redis")
    }


async def closed_loop(
    servers: ServerSet,
    prm: Params,
    rooms: int,
    per_room: int,
    senders: int | None,
    track_acks: bool = False,
) -> dict[str, Any]:
    """Senders keep ``window`` messages in flight; delivered/s over the measured interval.

    Fan-out (``track_acks`` false): a slot frees when the sender's own copy of its message
    arrives; durable append: when its ack does."""
    load, members = await start_loop(servers, prm, rooms, per_room, senders, track_acks)
    await asyncio.sleep(prm.warmup)
    meter = Meter(servers)
    d0, a0 = load.deliveries, load.acks
    meter.start()
    load.measuring = track_acks
    await asyncio.sleep(prm.duration)
    load.measuring = False
    cpu = meter.stop()
    deliveries, acks = load.deliveries - d0, load.acks - a0
    unacked = await stop_loop(load, members)
    seconds = cpu["seconds"]
    if not deliveries:
        raise RuntimeError(
            f"no chat.message arrived in the measured interval ({acks} acks, "
            f"{load.errors} errors, {unacked} messages never acked)"
        )
    out = {
        "sockets": len(members),
        "rooms": rooms,
        "per_room": per_room,
        "senders": sum(m.sender for m in members),
        "window": prm.window,
        "delivered_per_s": round(deliveries / seconds, 1),
        "acked_per_s": round(acks / seconds, 1),
        "cpu_us_per_delivery": round(cpu["server_cpu"] * seconds / deliveries * 1e6, 2)
        if deliveries
        else None,
        **backend_per_delivery(cpu, deliveries),
        "errors": load.errors,
        "error_samples": load.error_samples,
        "unacked_after_drain": unacked,
        **cpu,
    }
    if track_acks:
        out.update(ack_p50_ms=pct(load.ack_lat, 50), ack_p99_ms=pct(load.ack_lat, 99))
    return out


async def scenario_fanout(servers: ServerSet, prm: Params) -> dict[str, Any]:
    if prm.smoke:
        return await closed_loop(servers, prm, 4, 5, 2)
    return await closed_loop(servers, prm, 20, 10, 2)


async def scenario_bigroom(servers: ServerSet, prm: Params) -> dict[str, Any]:
    if prm.smoke:
        return await closed_loop(servers, prm, 2, 20, 2)
    return await closed_loop(servers, prm, 5, 200, 2)


async def scenario_durable(servers: ServerSet, prm: Params) -> dict[str, Any]:
    rooms = 10 if prm.smoke else 100
    return await closed_loop(servers, prm, rooms, 2, None, track_acks=True)


async def scenario_latency(servers: ServerSet, prm: Params) -> dict[str, Any]:
    """Open loop: messages due on a fixed timetable, whatever the answers; latency from the
    moment each frame was written. Typers toggle typing every 1.1 s (over the server's 1 s
    typing throttle, so none is held back) and their presence.typing latency is measured."""
    rooms, per_room, senders, typers = (4, 10, 2, 3) if prm.smoke else (20, 10, 2, 5)
    deliveries_per_s = prm.rate / 10 if prm.smoke else prm.rate
    msg_rate = deliveries_per_s / per_room
    load = Load(make_target(servers))
    load.track = True
    room_ids = await load.target.make_rooms(rooms, per_room)
    members = await open_members(load, servers, room_ids, per_room)
    log(f"{len(members)} sockets open; {msg_rate:.0f} msg/s = {deliveries_per_s:.0f} deliveries/s")
    send_from = [m for m in members if int(m.user.rsplit("-", 1)[1]) < senders]
    typing_from = [
        m for m in members if senders <= int(m.user.rsplit("-", 1)[1]) < senders + typers
    ]
    t0 = time.perf_counter() + 0.2
    start, end = t0 + prm.warmup, t0 + prm.warmup + prm.duration
    lag: list[float] = []

    async def chat_ticker() -> None:
        n = len(send_from)
        for k in range(int((end - t0) * msg_rate) + 1):
            due = t0 + k / msg_rate
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            if start <= due:
                lag.append(now - due)
            send_from[k % n].send_chat()

    async def typing_ticker() -> None:
        if not typing_from:
            return
        n = len(typing_from)
        interval = 1.1 / n
        for k in range(int((end - t0) / interval) + 1):
            due = t0 + k * interval
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            m = typing_from[k % n]
            assert m.client is not None
            load.typing_sent[m.user] = time.perf_counter()
            m.client.send_text(load.target.typing(bool((k // n) % 2 == 0)))

    async def window() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        meter = Meter(servers)
        d0 = load.deliveries
        meter.start()
        load.measuring = True
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        load.measuring = False
        cpu = meter.stop()
        delivered = load.deliveries - d0
        return {
            "delivered_per_s": round(delivered / cpu["seconds"], 1),
            "cpu_us_per_delivery": round(cpu["server_cpu"] * cpu["seconds"] / delivered * 1e6, 2)
            if delivered
            else None,
            **cpu,
        }

    loop_lag: list[float] = []

    async def lag_probe() -> None:
        """How late this event loop wakes up: a stall here is the load generator's (or the
        machine's), and shows in every latency figure of the interval."""
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        for _ in range(int(prm.duration / 0.002) + 1):
            t = time.perf_counter()
            if t >= end:
                return
            await asyncio.sleep(0.002)
            loop_lag.append(time.perf_counter() - t - 0.002)

    results = await asyncio.gather(chat_ticker(), typing_ticker(), window(), lag_probe())
    measured = results[2]
    await until(lambda: not any(m.outstanding for m in members), 15)
    unacked = sum(len(m.outstanding) for m in members)
    await close_members(members)
    return {
        "sockets": len(members),
        "rooms": rooms,
        "per_room": per_room,
        "offered_deliveries_per_s": deliveries_per_s,
        "offered_msgs_per_s": msg_rate,
        "e2e_p50_ms": pct(load.e2e, 50),
        "e2e_p99_ms": pct(load.e2e, 99),
        "e2e_p999_ms": pct(load.e2e, 99.9),
        "e2e_max_ms": pct(load.e2e, 100),
        "e2e_samples": len(load.e2e),
        "typing_p50_ms": pct(load.typing_lat, 50),
        "typing_p99_ms": pct(load.typing_lat, 99),
        "typing_samples": len(load.typing_lat),
        "send_lag_p99_ms": pct(lag, 99),
        "loop_lag_p99_ms": pct(loop_lag, 99),
        "loop_lag_max_ms": pct(loop_lag, 100),
        "errors": load.errors,
        "unacked_after_drain": unacked,
        **measured,
    }


async def scenario_idle(servers: ServerSet, prm: Params) -> dict[str, Any]:
    """Server RSS per idle socket: warm up, baseline, then 1,000 and 10,000 sockets."""
    steps = [100, 1000] if prm.smoke else [1000, 10000]
    per_room = 10
    load = Load(make_target(servers))
    room_ids = await load.target.make_rooms(steps[-1] // per_room + 2, per_room)
    warm = await open_members(
        load, servers, room_ids[-2:], per_room, start_index=10**6, room_offset=len(room_ids) - 2
    )
    await close_members(warm)
    await asyncio.sleep(1.0)
    base = servers.rss_kib()
    traced = servers.spec.launcher == "tracemalloc"
    if traced:
        servers.procs[0].proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(3.0)
    out: dict[str, Any] = {"baseline_rss_kib": base}
    members: list[Member] = []
    t = time.perf_counter()
    for n in steps:
        have = len(members) // per_room
        members += await open_members(
            load,
            servers,
            room_ids[have : n // per_room],
            per_room,
            concurrency=100,
            room_offset=have,
            timeout=300,
        )
        await asyncio.sleep(2.0)
        rss = servers.rss_kib()
        out[f"rss_kib_{n}"] = rss
        out[f"kib_per_socket_{n}"] = round((rss - base) / n, 2)
        out[f"open_seconds_{n}"] = round(time.perf_counter() - t, 2)
        log(f"{n} idle sockets: {(rss - base) / n:.1f} KiB each")
    out["closed_early"] = sum(
        m.client is not None and m.client.close_code is not None for m in members
    )
    if traced:  # the allocations of every open socket, by line: see memprofile_server.py
        servers.procs[0].proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(40.0)
    await close_members(members)
    return out


async def scenario_joinstorm(servers: ServerSet, prm: Params) -> dict[str, Any]:
    per_room, history = prm.per_room, 50
    rooms = max(1, prm.clients // per_room) if prm.clients else 10 if prm.smoke else 100
    load = Load(make_target(servers))
    room_ids = await load.target.make_rooms(rooms, per_room)
    # History: one member per room sends 50 messages (window 10), all acked, then leaves.
    fillers = await open_members(load, servers, room_ids, 1, start_index=10**6)
    for m in fillers:
        m.sender = True
    load.window = 0
    for _ in range(history):
        for m in fillers:
            m.send_chat()
    await until(lambda: load.acks >= rooms * history, max(60.0, rooms * history / 500))
    history_acked = load.acks  # of rooms x history: short means the storm met a busy server
    await close_members(fillers)
    await asyncio.sleep(1.0)
    load.welcome_history.clear()
    target = load.target
    storm = [
        Member(load, r, rid, r * per_room + j, f"u{r}-{j}")
        for r, rid in enumerate(room_ids)
        for j in range(per_room)
    ]
    paths = [target.path(m.room_id, m.user, int(m.user.rsplit("-", 1)[1])) for m in storm]
    meter = Meter(servers)
    meter.start()
    t0 = time.perf_counter()
    failures = 0
    failure_samples: list[str] = []
    wait = 30.0 if len(storm) <= 1000 else 60.0

    async def one(m: Member, path: str, sub: str | None) -> float | None:
        nonlocal failures
        try:
            proc = servers.procs[m.index % len(servers.procs)]
            m.client = await connect(
                HOST,
                proc.port,
                path,
                m.on_message,
                subprotocol=sub,
                timeout=wait,
                user=m,
                local_host=source_address(m.index, PER_SOURCE) if len(storm) > 5000 else None,
            )
            return await welcome_of(m, wait) - t0
        except (OSError, RuntimeError, TimeoutError) as exc:
            failures += 1
            if len(failure_samples) < 3:
                failure_samples.append(f"{m.user}: {exc!r}"[:300])
            return None

    times = await asyncio.gather(*(one(m, p, s) for m, (p, s) in zip(storm, paths, strict=True)))
    cpu = meter.stop()
    ok = [t for t in times if t is not None]
    total = max(ok) if ok else None
    await close_members(storm)
    return {
        "clients": len(storm),
        "history": history,
        "failures": failures,
        "failure_samples": failure_samples,
        "history_acked": history_acked,
        "welcome_history_seen": load.welcome_history,
        "total_s": round(total, 3) if total else None,
        "connects_per_s": round(len(ok) / total, 1) if total else None,
        "p50_ms": pct(ok, 50),
        "p99_ms": pct(ok, 99),
        "server_cpu_s": round(cpu["server_cpu"] * cpu["seconds"], 3),
        "other_cpu": cpu["other_cpu"],
        "client_cpu": cpu["client_cpu"],
    }


# Many idle sockets on one process (issue 23, target 4) --------------------------------------

PER_SOURCE = 20_000  # client sockets per loopback source address (about 28,000 ports each)
MANYIDLE_DEFAULT = 15_000  # quick on the 2-core machine; --sockets 100000 is the target


async def scenario_manyidle(servers: ServerSet, prm: Params) -> dict[str, Any]:
    """One process holding ``--sockets`` idle room sockets (rooms of 10, the client's ports
    spread over 127.0.0.2 and up, PER_SOURCE to an address): the server's RSS per socket;
    then 1% of the rooms chatting (one member of each sends ``--chat-rate`` messages/s, open
    loop, while every other socket stays idle): send -> receive p50/p99 at the other members,
    and the server's CPU."""
    wanted = prm.sockets or (500 if prm.smoke else MANYIDLE_DEFAULT)
    # This process holds a descriptor per socket too (the servers inherit its limit).
    budget = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 500
    n = min(wanted, budget)
    if n < wanted:
        log(f"{wanted} sockets asked, {n} fit under the open-files limit (ulimit -Hn)")
    per_room = 10
    rooms = max(1, n // per_room)
    # Smoke: a few sockets per address, so that the spreading itself is exercised.
    per_source = prm.per_source or (200 if prm.smoke else PER_SOURCE)
    load = Load(make_target(servers))
    load.track = True
    room_ids = await load.target.make_rooms(rooms + 1, per_room)
    warm = await open_members(
        load, servers, room_ids[-1:], per_room, start_index=10**7, room_offset=rooms
    )
    await close_members(warm)
    await asyncio.sleep(1.0)
    base = servers.rss_kib()
    t = time.perf_counter()
    members = await open_members(
        load,
        servers,
        room_ids[:rooms],
        per_room,
        concurrency=200,
        timeout=max(600.0, n / 50),  # the whole opening; 100,000 take a few minutes
        per_source=per_source,
    )
    opened = time.perf_counter() - t
    await asyncio.sleep(2.0)
    rss = servers.rss_kib()
    log(
        f"{len(members)} idle sockets in {opened:.1f} s: {(rss - base) / len(members):.1f} KiB each"
    )
    chatting = max(1, rooms // 100)
    step = rooms // chatting
    senders = [members[r * per_room] for r in range(0, step * chatting, step)]
    rate = chatting * prm.chat_rate
    t0 = time.perf_counter() + 0.2
    start, end = t0 + prm.warmup, t0 + prm.warmup + prm.duration
    sent = 0

    async def ticker() -> None:
        nonlocal sent
        for k in range(int((end - t0) * rate) + 1):
            due = t0 + k / rate
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            senders[k % len(senders)].send_chat()
            sent += start <= due

    async def window() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        meter = Meter(servers)
        meter.start()
        load.measuring = True
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        load.measuring = False
        return meter.stop()

    cpu = (await asyncio.gather(ticker(), window()))[1]
    await until(lambda: not any(m.outstanding for m in senders), 15)
    closed_early = sum(m.client is not None and m.client.close_code is not None for m in members)
    rss_end = servers.rss_kib()
    await close_members(members)
    return {
        "sockets": len(members),
        "sockets_asked": wanted,
        "source_addresses": (len(members) - 1) // per_source + 1,
        "rooms": rooms,
        "baseline_rss_kib": base,
        "rss_kib": rss,
        "kib_per_socket": round((rss - base) / len(members), 2),
        "open_seconds": round(opened, 2),
        "connects_per_s": round(len(members) / opened, 1),
        "chatting_rooms": chatting,
        "chat_msgs_per_s": rate,
        "chat_sent_in_window": sent,
        "e2e_p50_ms": pct(load.e2e, 50),
        "e2e_p99_ms": pct(load.e2e, 99),
        "e2e_max_ms": pct(load.e2e, 100),
        "e2e_samples": len(load.e2e),
        "rss_kib_after_chat": rss_end,
        "closed_early": closed_early,
        "errors": load.errors,
        **cpu,
    }


# The inbox: every room of a user on one socket (issue 17) ------------------------------------

INBOX_ROOM = b'{"type":"inbox.room"'
INBOX_WELCOME = b'{"type":"inbox.welcome"'
INBOX_P99_TARGET_MS = 20.0


def iso_seconds(ts: str) -> float:
    """A server timestamp (``2026-11-27T09:12:03.512Z``) as Unix seconds."""
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()


class InboxProbe:
    """What every inbox socket reports: each ``inbox.room`` whose newest message was sent in
    the measured interval, timed from that message's ``ts`` (taken as its batch is stored,
    before the commit's fsync: an upper bound of commit -> inbox) and from its send."""

    def __init__(self) -> None:
        self.measuring = False
        self.start = float("inf")  # messages sent from then on are measured
        self.updates = 0
        self.sent = 0
        self.sent_at: dict[str, float] = {}
        self.commit_lat: list[float] = []
        self.send_lat: list[float] = []
        self.errors = 0
        # When each message's author saw it come back on its room socket (the hub delivers
        # it there right after the commit, before the inbox): the earliest moment after the
        # commit the load generator can observe.
        self.echo_at: dict[str, float] = {}
        self.arrivals: list[tuple[str, float]] = []  # (message id, inbox.room received)

    def after_echo(self) -> list[float]:
        """inbox.room arrival after the message's echo: the inbox's delay after the commit."""
        return [max(0.0, t - self.echo_at[i]) for i, t in self.arrivals if i in self.echo_at]


class InboxSender(Member):
    """A room socket that sends chat and notes when its own messages come back."""

    __slots__ = ("probe",)

    def __init__(self, probe: InboxProbe, *args: Any) -> None:
        super().__init__(*args)
        self.probe = probe

    def on_message(self, client: WSClient, p: bytes) -> None:
        if p.startswith(Target.MSG) and self.tag in p:
            self.probe.echo_at[orjson.loads(p)["id"]] = time.perf_counter()
        super().on_message(client, p)


class InboxReader:
    __slots__ = ("client", "probe", "user", "welcomed")

    def __init__(self, probe: InboxProbe, user: str) -> None:
        self.probe = probe
        self.user = user
        self.client: WSClient | None = None
        self.welcomed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_message(self, client: WSClient, p: bytes) -> None:
        probe = self.probe
        if p.startswith(INBOX_ROOM):
            probe.updates += 1
            if not probe.measuring:
                return
            wall, now = time.time(), time.perf_counter()
            message = orjson.loads(p)["room"]["last_message"]
            sent = probe.sent_at.get(message["id"]) if message is not None else None
            if sent is None or sent < probe.start:
                return  # a message of the warmup, late or not: not what is measured
            assert message is not None
            probe.commit_lat.append(wall - iso_seconds(message["ts"]))
            probe.send_lat.append(now - sent)
            probe.arrivals.append((message["id"], now))
        elif p.startswith(INBOX_WELCOME):
            if not self.welcomed.done():
                self.welcomed.set_result(time.perf_counter())
        elif p.startswith(b'{"type":"error"'):
            probe.errors += 1


def inbox_pairs(users: int) -> list[tuple[int, int]]:
    """Rooms of two, each user in five: user i with i+1, i+2 (each counted from both ends)
    and i+users/2."""
    pairs = [(i, (i + d) % users) for d in (1, 2) for i in range(users)]
    return pairs + [(i, i + users // 2) for i in range(users // 2)]


async def make_pair_rooms(servers: ServerSet, pairs: list[tuple[int, int]]) -> list[str]:
    base = f"http://{HOST}:{servers.procs[0].port}"
    service = token(servers.secret, "bench", "Bench", role="service", ttl=7200)
    headers = {"authorization": "Bearer " + service}
    gate = asyncio.Semaphore(16)

    async def one(a: int, b: int, http: httpx.AsyncClient) -> str:
        body = {
            "title": f"u{a} & u{b}",
            "members": [
                {"user_id": f"u{a}", "name": f"u{a}", "role": "mentor"},
                {"user_id": f"u{b}", "name": f"u{b}", "role": "mentee"},
            ],
        }
        async with gate:
            resp = await http.post(f"{base}/api/rooms", headers=headers, json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/rooms: {resp.status_code} {resp.text[:200]}")
        return str(resp.json()["id"])

    async with httpx.AsyncClient(timeout=60) as http:
        return list(await asyncio.gather(*(one(a, b, http) for a, b in pairs)))


async def open_inboxes(servers: ServerSet, probe: InboxProbe, users: int) -> list[InboxReader]:
    gate = asyncio.Semaphore(64)
    readers = [InboxReader(probe, f"u{i}") for i in range(users)]

    async def one(r: InboxReader) -> None:
        path = f"/inbox/ws?token={token(servers.secret, r.user, r.user, ttl=7200)}"
        async with gate:
            r.client = await connect(
                HOST,
                servers.procs[0].port,
                path,
                r.on_message,
                subprotocol="menteo.v1.json",
                timeout=60,
                user=r,
            )
            done, _ = await asyncio.wait(
                (r.welcomed, r.client.closed), timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            if r.welcomed not in done:
                raise RuntimeError(f"{r.user}: no inbox.welcome ({r.client.close_code})")

    await asyncio.gather(*(one(r) for r in readers))
    return readers


async def scenario_inbox(servers: ServerSet, prm: Params) -> dict[str, Any]:
    """1,000 inbox sockets, each user in 5 rooms of two; chat at 1,000 messages/s, open loop,
    from one member of each of 200 rooms: commit -> inbox.room at both members' inboxes,
    measured from the message's ``ts`` (taken before the commit's fsync: an upper bound) and
    from its echo on its author's room socket (delivered right after the commit)."""
    users, senders, rate = (100, 20, 100.0) if prm.smoke else (1000, 200, 1000.0)
    pairs = inbox_pairs(users)
    room_ids = await make_pair_rooms(servers, pairs)
    probe = InboxProbe()
    readers = await open_inboxes(servers, probe, users)
    load = Load(make_target(servers))  # the senders' room sockets: acks and echoes only
    load.track = True
    load.sent_at = probe.sent_at
    step = len(pairs) // senders
    chosen = list(range(0, step * senders, step))
    members = [InboxSender(probe, load, k, room_ids[k], k, f"u{pairs[k][0]}") for k in chosen]
    for m in members:
        path, sub = load.target.path(m.room_id, m.user, 0)
        m.client = await connect(
            HOST, servers.procs[0].port, path, m.on_message, subprotocol=sub, timeout=60, user=m
        )
        await welcome_of(m, 60)
    log(f"{len(readers)} inbox sockets, {len(pairs)} rooms, {len(members)} senders at {rate:.0f}/s")
    t0 = time.perf_counter() + 0.2
    start, end = t0 + prm.warmup, t0 + prm.warmup + prm.duration
    probe.start = start

    async def ticker() -> None:
        for k in range(int((end - t0) * rate) + 1):
            due = t0 + k / rate
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            probe.measuring = start <= due
            members[k % len(members)].send_chat()
            probe.sent += start <= due

    loop_lag: list[float] = []

    async def lag_probe() -> None:
        """How late this event loop wakes up: a stall here (the machine's, or the load
        generator's) shows in every latency figure of the interval."""
        for _ in range(int(prm.duration / 0.002) + 1):
            t = time.perf_counter()
            if t >= end:
                return
            await asyncio.sleep(0.002)
            loop_lag.append(time.perf_counter() - t - 0.002)

    meter = Meter(servers)
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    u0 = probe.updates
    meter.start()
    await asyncio.gather(ticker(), lag_probe())
    cpu = meter.stop()
    await until(lambda: not any(m.outstanding for m in members), 15)
    probe.measuring = False
    updates = probe.updates - u0
    await close_members(members)
    for r in readers:
        if r.client is not None:
            r.client.close()
    p99 = pct(probe.commit_lat, 99)
    return {
        "inbox_sockets": len(readers),
        "rooms": len(pairs),
        "rooms_per_user": 5,
        "senders": len(members),
        "offered_msgs_per_s": rate,
        "sent_in_window": probe.sent,
        "inbox_updates_per_s": round(updates / cpu["seconds"], 1),
        "commit_to_inbox_p50_ms": pct(probe.commit_lat, 50),
        "commit_to_inbox_p99_ms": p99,
        "commit_to_inbox_p999_ms": pct(probe.commit_lat, 99.9),
        "commit_to_inbox_max_ms": pct(probe.commit_lat, 100),
        "echo_to_inbox_p50_ms": pct(probe.after_echo(), 50),
        "echo_to_inbox_p99_ms": pct(probe.after_echo(), 99),
        "send_to_inbox_p50_ms": pct(probe.send_lat, 50),
        "send_to_inbox_p99_ms": pct(probe.send_lat, 99),
        "samples": len(probe.commit_lat),
        "p99_target_ms": INBOX_P99_TARGET_MS,
        "loop_lag_p99_ms": pct(loop_lag, 99),
        "loop_lag_max_ms": pct(loop_lag, 100),
        "p99_met": p99 is not None and p99 <= INBOX_P99_TARGET_MS,
        "errors": load.errors + probe.errors,
        **cpu,
    }


# One process on PostgreSQL over many messages (issue 23, target 3) -------------------------

PHASES = 5
PHASE_TIMEOUT = 300.0  # seconds one phase may take at most
WAIT_SAMPLE = 0.1  # seconds between two looks at pg_stat_activity


class PgWatch:
    """What PostgreSQL's sessions of the bench database are doing, sampled every
    ``WAIT_SAMPLE`` (state and wait event: ``idle in transaction/Client:ClientRead`` is a
    session waiting for our server mid-transaction, ``active/IO:WALSync`` a commit's fsync,
    ``active/CPU`` PostgreSQL working; idle pooled connections are not counted), and its
    counters at each phase's ends: commits, WAL syncs, size, dead rows, autovacuums (the
    statistics reach these views up to a second late)."""

    def __init__(self, url: str) -> None:
        self.dsn = plain_dsn(url)
        self.conn: Any = None
        self.task: asyncio.Task[None] | None = None
        self.samples: Counter[str] = Counter()
        self.looks = 0
        self.lock = asyncio.Lock()  # one connection: the sampler and the counters take turns

    async def start(self) -> None:
        self.conn = await asyncpg.connect(self.dsn, timeout=10)
        self.task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        for _ in range(int(PHASES * PHASE_TIMEOUT / WAIT_SAMPLE)):
            async with self.lock:
                rows = await self.conn.fetch(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            self.looks += 1
            for r in rows:
                if r["state"] == "idle":
                    continue  # a pooled connection nobody uses: not a wait
                what = f"{r['wait_event_type']}:{r['wait_event']}" if r["wait_event"] else "CPU"
                self.samples[f"{r['state']}/{what}"] += 1
            await asyncio.sleep(WAIT_SAMPLE)

    async def counters(self) -> dict[str, int]:
        async with self.lock:
            row = await self.conn.fetchrow(
                "SELECT d.xact_commit, w.wal_sync, w.wal_bytes::bigint, "
                "pg_database_size(current_database()) AS size, "
                "(SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables) AS dead, "
                "(SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
                "FROM pg_stat_user_tables) AS autovacuums "
                "FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()"
            )
        return {k: int(v) for k, v in dict(row).items()}

    def waits(self) -> dict[str, float]:
        """Since the last call: sessions in a transaction per look, on average
        (``busy_sessions``), and the share of those session-looks in each state."""
        busy = sum(self.samples.values())
        out = {"busy_sessions": round(busy / max(1, self.looks), 2)}
        out.update({k: round(v / max(1, busy), 3) for k, v in self.samples.most_common(6)})
        self.samples.clear()
        self.looks = 0
        return out

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.conn is not None:
            await self.conn.close()


async def scenario_pgphases(servers: ServerSet, prm: Params) -> dict[str, Any]:
    """The fanout shape (20 rooms x 10, 2 senders per room, closed loop) for ``messages``
    messages in five equal phases: whether the rate holds as the tables grow, and what
    PostgreSQL waits on in each phase."""
    total = prm.messages or (2_000 if prm.smoke else 200_000)
    rooms, per_room = (4, 5) if prm.smoke else (20, 10)
    load, members = await start_loop(servers, prm, rooms, per_room, 2, track_acks=False)
    watch = PgWatch(servers.pg_url) if servers.spec.database == "postgres" else None
    phases: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(prm.warmup)
        if watch is not None:
            await watch.start()
        per_phase = max(1, total // PHASES)
        for i in range(PHASES):
            meter = Meter(servers)
            d0, a0 = load.deliveries, load.acks
            before = await watch.counters() if watch else {}
            if watch:
                watch.waits()
            meter.start()
            finished = await until(lambda a0=a0: load.acks - a0 >= per_phase, PHASE_TIMEOUT)
            cpu = meter.stop()
            deliveries, acks = load.deliveries - d0, load.acks - a0
            phase: dict[str, Any] = {
                "phase": i + 1,
                "finished": finished,
                "messages": acks,
                "delivered_per_s": round(deliveries / cpu["seconds"], 1),
                "acked_per_s": round(acks / cpu["seconds"], 1),
                "cpu_us_per_delivery": round(
                    cpu["server_cpu"] * cpu["seconds"] / max(1, deliveries) * 1e6, 2
                ),
                **backend_per_delivery(cpu, deliveries),
                **cpu,
            }
            if watch:
                after = await watch.counters()
                grown = {k: after[k] - before[k] for k in ("xact_commit", "wal_sync", "wal_bytes")}
                phase.update(
                    messages_per_commit=round(acks / max(1, grown["xact_commit"]), 1),
                    wal_syncs=grown["wal_sync"],
                    wal_bytes_per_message=round(grown["wal_bytes"] / max(1, acks)),
                    db_mib=round(after["size"] / 2**20, 1),
                    dead_rows=after["dead"],
                    autovacuums=after["autovacuums"] - before["autovacuums"],
                    waits=watch.waits(),
                )
            phases.append(phase)
            log(f"phase {i + 1}: {phase['delivered_per_s']:,.0f} delivered/s")
            if not finished:
                break
    finally:
        if watch is not None:
            await watch.stop()
    unacked = await stop_loop(load, members)
    first, last = phases[0], phases[-1]
    return {
        "messages": sum(p["messages"] for p in phases),
        "phases": phases,
        "delivered_per_s": first["delivered_per_s"],
        "last_delivered_per_s": last["delivered_per_s"],
        "kept": round(last["delivered_per_s"] / max(1.0, first["delivered_per_s"]), 2),
        "cpu_us_per_delivery": first["cpu_us_per_delivery"],
        "last_cpu_us_per_delivery": last["cpu_us_per_delivery"],
        "errors": load.errors,
        "unacked_after_drain": unacked,
        "server_cpu": first["server_cpu"],
        "other_cpu": round(sum(p["other_cpu"] for p in phases) / len(phases), 3),
    }


SCENARIOS: dict[str, Callable[[ServerSet, Params], Any]] = {
    "fanout": scenario_fanout,
    "latency": scenario_latency,
    "bigroom": scenario_bigroom,
    "idle": scenario_idle,
    "durable": scenario_durable,
    "joinstorm": scenario_joinstorm,
    "inbox": scenario_inbox,
    "manyidle": scenario_manyidle,
    "pgphases": scenario_pgphases,
}


# Running ---------------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(
    scenario: str,
    server: str,
    prm: Params,
    *,
    server_cpus: str,
    client_cpu: int,
    no_pin: bool,
    pg_url: str,
    redis_url: str,
    tmpdir: str | None,
    priority: int = 0,
) -> dict[str, Any]:
    spec = SERVERS[server]
    fds = raise_fd_limit()  # the servers inherit it
    pinned = not no_pin and shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) > 1
    if pinned:
        os.sched_setaffinity(0, {client_cpu})
    niced = 0
    if priority and hasattr(os, "setpriority"):
        # Ahead of other work on a shared machine (the servers inherit it): a CPU share
        # measured against whatever else runs is noise, not our server.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, priority)
            niced = priority
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="menteo-suite-", dir=tmpdir) as tmp:
        servers = ServerSet(spec, Path(tmp), server_cpus if pinned else None, pg_url, redis_url)
        result: dict[str, Any] = {
            "scenario": scenario,
            "server": server,
            "label": spec.label,
            "smoke": prm.smoke,
            "pinned": pinned,
            "fd_limit": fds,
            "nice": niced,
        }
        try:
            servers.start()
            log(
                f"{spec.label}: {len(servers.procs)} process(es) on port(s) "
                f"{', '.join(str(p.port) for p in servers.procs)}"
            )

            async def main() -> dict[str, Any]:
                quiet = await wait_quiet(0 if prm.smoke else 5)
                out: dict[str, Any] = await SCENARIOS[scenario](servers, prm)
                out["machine_busy_before"] = quiet
                return out

            result.update(uv_run(main()))
            result["ok"] = True
        except Exception as exc:
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000])
            log(f"failed: {result['error']}")
        finally:
            alive = [p.proc.poll() is None for p in servers.procs]
            result["server_exit_codes"] = servers.stop()
            result["server_died"] = not all(alive)
            result["server_problems"] = servers.problems()
            if not result.get("ok") and servers.procs:
                result["server_log_tail"] = servers.procs[0].log_tail(15)
    result["wall_s"] = round(time.time() - started, 1)
    return result


def uv_run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("scenario", nargs="?", choices=[*SCENARIOS, "feed", "notes"])
    p.add_argument(
        "--server",
        default="ours",
        type=server_list,
        help=f"one of {', '.join(SERVERS)}, or several, comma-separated, run in turn",
    )
    p.add_argument("--smoke", action="store_true", help="small sizes, short: a smoke test")
    p.add_argument("--warmup", type=float, default=None, help="seconds (default 1.5; smoke 0.5)")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="measured seconds (default 4, latency 8; smoke 1.5)",
    )
    p.add_argument("--window", type=int, default=4, help="closed loop: unacked per sender")
    p.add_argument(
        "--rate", type=float, default=20_000.0, help="latency: deliveries/s offered (default 20000)"
    )
    p.add_argument(
        "--sockets",
        type=int,
        default=0,
        help=f"manyidle: idle sockets (default {MANYIDLE_DEFAULT:,}; smoke 500), capped by "
        "the open-files limit",
    )
    p.add_argument("--chat-rate", type=float, default=5.0, help="manyidle: msg/s per chatting room")
    p.add_argument(
        "--per-source",
        type=int,
        default=0,
        help="manyidle: client sockets per loopback source address (default 20,000; smoke 200)",
    )
    p.add_argument(
        "--clients", type=int, default=0, help="joinstorm: clients (default 1,000; smoke 100)"
    )
    p.add_argument(
        "--per-room",
        type=int,
        default=10,
        help="joinstorm: members per room (default 10; 2: most joins open a cold room)",
    )
    p.add_argument(
        "--messages",
        type=int,
        default=0,
        help="pgphases: messages over the five phases (default 200,000; smoke 2,000)",
    )
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument(
        "--nice",
        type=int,
        default=-5 if os.geteuid() == 0 else 0,
        help="scheduling priority of load generator and servers (default -5 as "
        "root, so that other work on a shared machine disturbs less; 0: none)",
    )
    p.add_argument(
        "--database-url",
        default=DEFAULT_PG,
        help="PostgreSQL for ours-pg / ours-redis: its public schema is DROPPED",
    )
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--tmpdir", default=None)
    p.add_argument("--json", dest="json_path")
    p.add_argument("--list", action="store_true", help="list scenarios and servers")
    return p.parse_args(argv)


# What a comma-separated --server prints per server at the end.
SIDE_BY_SIDE = (
    "delivered_per_s",
    "cpu_us_per_delivery",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "server_cpu",
    "backend_cpu",
    "error",
)


def server_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown server {', '.join(unknown)}")
    return names


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.list or not a.scenario:
        print("scenarios:", ", ".join([*SCENARIOS, "feed", "notes"]))
        for s in SERVERS.values():
            print(f"  --server {s.name:15} {s.label}")
        return 0
    if a.scenario == "notes":  # its own script: editors, not chat members (--smoke passes)
        cmd = [sys.executable, str(BENCH / "notes_compare.py"), *(["--smoke"] if a.smoke else [])]
        return subprocess.call(cmd, cwd=ROOT)
    if a.scenario == "feed":
        feed = BENCH / "feed_fanout.py"
        if not feed.exists():
            print(
                json.dumps(
                    {
                        "scenario": "feed",
                        "ok": False,
                        "pending": True,
                        "error": "bench/feed_fanout.py is not there yet",
                    }
                )
            )
            return 0
        small = ["--followers", "40", "--posts", "3", "--pause", "0.05"] if a.smoke else []
        cmd = [sys.executable, str(feed), *small]
        return subprocess.call(cmd, cwd=ROOT)
    duration = (
        a.duration
        if a.duration is not None
        else (1.5 if a.smoke else 8.0 if a.scenario in ("latency", "inbox", "manyidle") else 4.0)
    )
    warmup = a.warmup if a.warmup is not None else (0.5 if a.smoke else 1.5)
    prm = Params(
        a.smoke,
        warmup,
        duration,
        a.window,
        a.rate,
        a.sockets,
        a.clients,
        a.chat_rate,
        a.per_source,
        a.messages,
        a.per_room,
    )
    results = []
    for server in a.server:
        result = run(
            a.scenario,
            server,
            prm,
            server_cpus=a.server_cpus,
            client_cpu=a.client_cpu,
            no_pin=a.no_pin,
            pg_url=a.database_url,
            redis_url=a.redis_url,
            tmpdir=a.tmpdir,
            priority=a.nice,
        )
        result["machine"] = machine_info()
        results.append(result)
    if len(results) > 1:  # side by side, one line each, after the full results
        for result in results:
            shown = (f"{key} {result[key]}" for key in SIDE_BY_SIDE if key in result)
            log(f"{result['server']:15} " + ", ".join(shown))
    text = json.dumps(results[0] if len(results) == 1 else results, indent=1)
    print(text)
    if a.json_path:
        Path(a.json_path).write_text(text + "\n")
    return 0 if all(result.get("ok") for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
