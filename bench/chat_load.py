"""Durable chat load: acked messages/s and send→receive latency against real server processes.

Starts ``menteo-realtime serve`` itself (one or more processes, on a fresh database), creates
rooms through the REST API, connects real WebSocket members and has every member send, either
in a closed loop with a bounded window of unacked messages (the default: throughput at
saturation) or open loop at a fixed total rate (``--rate``: latency at a stated load). Prints
a Markdown table row and JSON.

    python bench/chat_load.py --rooms 100 --members 2 --duration 10
    python bench/chat_load.py --rooms 100 --members 2 --duration 10 --rate 1000

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from chat_report import (
    MAX_PROBLEMS,
    TABLE_HEADER,
    Result,
    cpu_share,
    fmt,
    load_label,
    order_problems,
    percentile_ms,
    setup_label,
    summarise,
    table_row,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from menteo_testkit.database import reset_schema as reset_postgres
from menteo_testkit.ports import free_port
from menteo_testkit.procstat import CPU_GROUPS, group_cpu, machine_cpu
from menteo_testkit.server import Server, child_env
from menteo_testkit.tokens import token

# What this module offered before its shared parts moved to menteo_testkit and its report
# to chat_report.py: still importable from here.
__all__ = [
    "CPU_GROUPS",
    "TABLE_HEADER",
    "Result",
    "Server",
    "cpu_share",
    "fmt",
    "free_port",
    "group_cpu",
    "load_label",
    "machine_cpu",
    "order_problems",
    "percentile_ms",
    "reset_postgres",
    "server_env",
    "setup_label",
    "start_server",
    "stop_server",
    "summarise",
    "table_row",
    "wait_ready",
]

SUBPROTOCOL = "menteo.v1.json"
# High enough that the per-connection token bucket never refuses a frame: the limiter is
# a policy, not what this bench measures.
UNLIMITED_RATE = "1000000"
# Hard caps so that no loop can run away even if the clock or the server misbehaves.
MAX_SENDS_PER_MEMBER = 1_000_000
MAX_FRAMES_PER_MEMBER = 50_000_000
CONNECT_CONCURRENCY = 32  # sockets opened at once: a burst of 200 handshakes is not the test


@dataclass(frozen=True)
class Options:
    rooms: int
    members: int
    window: int
    duration: float
    warmup: float
    drain_timeout: float
    body_size: int
    processes: int
    database_url: str | None
    redis_url: str | None
    server_cpus: str
    client_cpu: int
    no_pin: bool
    tmpdir: str | None
    json_path: str | None
    label: str | None
    rate: float | None = None  # open loop: total chat.send frames per second, all members

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


# Server processes -----------------------------------------------------------------------


def can_pin() -> bool:
    """Pinning only helps with a core each for server and client; taskset does the server."""
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def server_env(database_url: str, redis_url: str | None, secret: str) -> dict[str, str]:
    return child_env(
        {
            "MENTEO_SECRET": secret,
            "MENTEO_DATABASE_URL": database_url,
            "MENTEO_REDIS_URL": redis_url or "",
            "MENTEO_RATE_PER_SECOND": UNLIMITED_RATE,
            "MENTEO_RATE_BURST": UNLIMITED_RATE,
        }
    )


def start_server(env: dict[str, str], log_path: Path, cpus: str | None) -> Server:
    server = Server(free_port(), None, log_path, env=env, cpus=cpus)
    server.spawn()
    return server


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    server.wait_ready(timeout)


def stop_server(server: Server, timeout: float = 15.0) -> int | None:
    return server.terminate(timeout)


def server_problems(servers: list[Server]) -> list[str]:
    """Log lines that signal trouble (the server runs at --log-level warning, so few)."""
    lines = [line for i, s in enumerate(servers) for line in s.problems(f"[server {i}] ")]
    return lines[:MAX_PROBLEMS]


def server_warnings(servers: list[Server]) -> tuple[int, list[str]]:
    """WARNING lines (not counted as problems, but worth reading): how many, and the first."""
    lines = [line for i, s in enumerate(servers) for line in s.warnings(f"[server {i}] ")]
    return len(lines), lines[:MAX_PROBLEMS]


# Load --------------------------------------------------------------------------------------


@dataclass
class Window:
    """The measured interval and everything sampled in it (one event loop: no locks)."""

    start: float
    end: float
    acks: int = 0
    deliveries: int = 0
    e2e: list[float] = field(default_factory=list)  # send → another member's chat.message
    ack_latency: list[float] = field(default_factory=list)  # send → own ack
    errors: Counter[str] = field(default_factory=Counter)
    # Messages sent and not yet acked, at the start and at the end of the interval.
    backlog: list[int] = field(default_factory=list)
    # Keyed by (room, client id): receivers of any member look up when it was sent.
    sent_at: dict[tuple[int, str], float] = field(default_factory=dict)
    # Open loop only: how late each send left compared with its schedule, and how many
    # sends were due in the interval.
    send_lag: list[float] = field(default_factory=list)
    due: int = 0

    def holds(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class Member:
    room: int
    index: int  # unique across rooms, so client ids never collide
    user_id: str
    ws: ClientConnection
    window: asyncio.Semaphore
    first_seq: int
    seqs: list[int] = field(default_factory=list)  # every seq'd frame received, in order
    acked: list[int] = field(default_factory=list)
    outstanding: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    closed: str | None = None


async def create_rooms(base: str, service_token: str, opts: Options) -> list[str]:
    headers = {"authorization": "Bearer " + service_token}
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int, http: httpx.AsyncClient) -> str:
        members = [
            {
                "user_id": f"u{i}-{j}",
                "name": f"User {i}-{j}",
                "role": "mentor" if j == 0 else "mentee",
            }
            for j in range(opts.members)
        ]
        async with gate:
            resp = await http.post(
                f"{base}/api/rooms",
                headers=headers,
                json={"title": f"bench {i}", "members": members},
            )
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/rooms: {resp.status_code} {resp.text[:200]}")
        room_id: str = resp.json()["id"]
        return room_id

    async with httpx.AsyncClient(timeout=30.0) as http:
        return list(await asyncio.gather(*(one(i, http) for i in range(opts.rooms))))


async def connect_member(
    ws_base: str, room_id: str, room: int, index: int, user_id: str, secret: str, window: int
) -> Member:
    bearer = token(secret, user_id, user_id, ttl=3600)
    ws = await connect(
        f"{ws_base}/rooms/{room_id}/ws?token={bearer}",
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
        open_timeout=30,
    )
    welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"expected welcome, got {welcome}")
    return Member(room, index, user_id, ws, asyncio.Semaphore(window), int(welcome["seq"]))


async def connect_all(
    servers: list[Server], room_ids: list[str], secret: str, opts: Options
) -> list[Member]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(room: int, j: int) -> Member:
        index = room * opts.members + j
        server = servers[index % len(servers)]  # round-robin: a room spans the processes
        async with gate:
            return await connect_member(
                server.ws, room_ids[room], room, index, f"u{room}-{j}", secret, opts.window
            )

    jobs = [one(room, j) for room in range(len(room_ids)) for j in range(opts.members)]
    return list(await asyncio.gather(*jobs))


async def sender(member: Member, win: Window, body: str, until: float) -> None:
    """Closed loop: a new message as soon as the window has room, until ``until``."""
    for n in range(MAX_SENDS_PER_MEMBER):
        remaining = until - time.perf_counter()
        if remaining <= 0:
            return
        try:
            async with asyncio.timeout(remaining):
                await member.window.acquire()
        except TimeoutError:
            return
        cid = f"{member.index}-{n}"
        now = time.perf_counter()
        member.outstanding[cid] = now
        win.sent_at[(member.room, cid)] = now
        try:
            await member.ws.send(
                orjson.dumps({"type": "chat.send", "id": cid, "body": body}).decode()
            )
        except ConnectionClosed:
            return  # the receiver records why
        member.sent += 1


async def open_sender(
    member: Member, win: Window, body: str, first_due: float, interval: float, until: float
) -> None:
    """Open loop: the k-th message is due at ``first_due + k * interval``, acked or not.

    Latency is measured from when a message was due, not from when it left, so a send that
    is late (the client's loop was busy, or the socket pushed back) counts against the
    figures instead of hiding the delay (no coordinated omission); ``send_lag`` says how late.
    """
    for n in range(MAX_SENDS_PER_MEMBER):
        due = first_due + n * interval
        if due >= until:
            return
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        cid = f"{member.index}-{n}"
        member.outstanding[cid] = due
        win.sent_at[(member.room, cid)] = due
        if win.holds(due):
            win.due += 1
            win.send_lag.append(time.perf_counter() - due)
        try:
            await member.ws.send(
                orjson.dumps({"type": "chat.send", "id": cid, "body": body}).decode()
            )
        except ConnectionClosed:
            return  # the receiver records why
        member.sent += 1


async def receiver(member: Member, win: Window, until: float) -> None:
    try:
        async with asyncio.timeout(until - time.perf_counter()):
            for _ in range(MAX_FRAMES_PER_MEMBER):
                data = await member.ws.recv()
                now = time.perf_counter()  # before parsing: parsing is the client's cost
                on_frame(member, win, orjson.loads(data), now)
    except TimeoutError:
        pass
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        member.closed = f"closed by server: {code}"


def on_frame(member: Member, win: Window, frame: dict[str, Any], now: float) -> None:
    kind = frame.get("type")
    if kind == "ack":
        sent = member.outstanding.pop(frame["id"], None)
        if sent is None:
            win.errors["unexpected ack"] += 1
            return
        member.window.release()  # unused in open loop: harmless
        member.acked.append(int(frame["seq"]))
        if win.holds(now):
            win.acks += 1
        if win.holds(sent):
            win.ack_latency.append(now - sent)
    elif kind == "chat.message":
        member.seqs.append(int(frame["seq"]))
        if win.holds(now):
            win.deliveries += 1
        if frame["author"]["user_id"] != member.user_id:
            sent = win.sent_at.get((member.room, frame["id"]))
            if sent is not None and win.holds(sent):
                win.e2e.append(now - sent)
    elif kind == "error":
        win.errors[str(frame.get("code"))] += 1
        # A refused message frees its slot: the loop goes on, the error count tells.
        if member.outstanding.pop(str(frame.get("id")), None) is not None:
            member.window.release()
    elif "seq" in frame:
        member.seqs.append(int(frame["seq"]))  # other durable events still count for order


def settled(members: list[Member]) -> bool:
    """All acks in, and every member has every seq its room acked (or its socket is gone)."""
    newest: dict[int, int] = {}
    for m in members:
        if m.outstanding and m.closed is None:
            return False
        newest[m.room] = max([newest.get(m.room, 0), *m.acked])
    return all(
        m.closed is not None or (m.seqs[-1] if m.seqs else 0) >= newest[m.room] for m in members
    )


async def drain(members: list[Member], seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if settled(members):
            return True
        await asyncio.sleep(0.05)
    return settled(members)


@dataclass
class CpuSample:
    client: float = 0.0
    servers: list[float | None] = field(default_factory=list)
    machine: dict[str, float] = field(default_factory=dict)  # seconds, from /proc/stat
    groups: dict[str, float] = field(default_factory=dict)  # postgres, redis-server


def cpu_now(servers: list[Server]) -> CpuSample:
    return CpuSample(
        time.process_time(), [s.cpu_seconds() for s in servers], machine_cpu(), group_cpu()
    )


async def sample_cpu(
    servers: list[Server], members: list[Member], win: Window
) -> tuple[CpuSample, CpuSample]:
    """CPU used by client and servers during exactly the measured interval (and the backlog
    of unacked messages at its start and end)."""
    await asyncio.sleep(max(0.0, win.start - time.perf_counter()))
    first = cpu_now(servers)
    win.backlog.append(sum(len(m.outstanding) for m in members))
    await asyncio.sleep(max(0.0, win.end - time.perf_counter()))
    win.backlog.append(sum(len(m.outstanding) for m in members))
    return first, cpu_now(servers)


PG_ACTIVITY = """
SELECT state, wait_event_type, wait_event FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""
PG_COMMITS = (
    "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"
)
PG_SAMPLE_EVERY = 0.1


async def sample_postgres(url: str, win: Window) -> dict[str, Any]:
    """What the server's PostgreSQL connections were doing during the measured interval.

    Every 0.1 s, the state and wait event of each of the database's client backends (the
    servers' pool connections): averaged, "how many connections were in this state". Plus
    commits and rollbacks per second from pg_stat_database (approximate: backends report
    their counters with up to about a second of delay).
    """
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await asyncio.sleep(max(0.0, win.start - time.perf_counter()))
        before = await conn.fetchrow(PG_COMMITS)
        states: Counter[str] = Counter()
        samples = 0
        while time.perf_counter() < win.end:
            for row in await conn.fetch(PG_ACTIVITY):
                wait = (
                    f"{row['wait_event_type']}:{row['wait_event']}"
                    if row["wait_event_type"]
                    else "cpu/no wait"
                )
                states[f"{row['state']} / {wait}"] += 1
            samples += 1
            await asyncio.sleep(PG_SAMPLE_EVERY)
        after = await conn.fetchrow(PG_COMMITS)
    finally:
        await conn.close()
    seconds = win.end - win.start
    # Our own sampling queries are transactions too: take them out.
    commits = after["xact_commit"] - before["xact_commit"] - (samples + 1)
    return {
        "commits_per_s": round(max(0, commits) / seconds, 1),
        "rollbacks_per_s": round((after["xact_rollback"] - before["xact_rollback"]) / seconds, 1),
        "samples": samples,
        "avg_connections": {k: round(v / samples, 2) for k, v in states.most_common()}
        if samples
        else {},
    }


@dataclass
class LoadOutcome:
    win: Window
    members: list[Member]
    drained: bool
    cpu: tuple[CpuSample, CpuSample]
    postgres: dict[str, Any] | None = None


async def run_load(
    servers: list[Server], secret: str, opts: Options, db_url: str | None = None
) -> LoadOutcome:
    service = token(secret, "bench", "Bench", role="service")
    room_ids = await create_rooms(servers[0].http, service, opts)
    members = await connect_all(servers, room_ids, secret, opts)
    log(f"{len(members)} members connected in {len(room_ids)} rooms; warming up")
    t0 = time.perf_counter()
    win = Window(t0 + opts.warmup, t0 + opts.warmup + opts.duration)
    hard_end = win.end + opts.drain_timeout + 5.0  # receivers end by then whatever happens
    body = "m" * opts.body_size
    receivers = [asyncio.create_task(receiver(m, win, hard_end)) for m in members]
    if opts.rate is not None:
        # Evenly spread: member i sends at t0 + (i + k * N) / rate, so the N members
        # together offer one message every 1 / rate seconds.
        n = len(members)
        senders = [
            asyncio.create_task(
                open_sender(m, win, body, t0 + i / opts.rate, n / opts.rate, win.end)
            )
            for i, m in enumerate(members)
        ]
    else:
        senders = [asyncio.create_task(sender(m, win, body, win.end)) for m in members]
    pg_task = None
    if db_url is not None and db_url.startswith("postgres"):
        pg_task = asyncio.create_task(sample_postgres(db_url, win))
    cpu = await sample_cpu(servers, members, win)
    await asyncio.gather(*senders)
    postgres = None
    if pg_task is not None:
        try:
            postgres = await pg_task
        except Exception as exc:  # a diagnostic: never fail the run for it
            postgres = {"error": repr(exc)}
    drained = await drain(members, opts.drain_timeout)
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    await asyncio.gather(
        *(asyncio.wait_for(m.ws.close(), 5) for m in members), return_exceptions=True
    )
    return LoadOutcome(win, members, drained, cpu, postgres)


# Orchestration -------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[chat_load] {message}", file=sys.stderr, flush=True)


def run(opts: Options) -> Result:
    pinned = can_pin() and not opts.no_pin
    if pinned:
        # The client gets its own core, so that its CPU is not taken from the server's.
        os.sched_setaffinity(0, {opts.client_cpu})
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="menteo-bench-", dir=opts.tmpdir) as tmp:
        database_url = opts.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        if database_url.startswith("postgres"):
            asyncio.run(reset_postgres(database_url))
        env = server_env(database_url, opts.redis_url, secret)
        servers: list[Server] = []
        try:
            # One at a time: the first one creates the schema, the others find it there.
            for i in range(opts.processes):
                servers.append(
                    start_server(
                        env, Path(tmp, f"server-{i}.log"), opts.server_cpus if pinned else None
                    )
                )
                wait_ready(servers[-1])
            log(
                f"{len(servers)} server process(es) ready on ports "
                f"{', '.join(str(s.port) for s in servers)} (pinned: {pinned})"
            )
            outcome = asyncio.run(run_load(servers, secret, opts, database_url))
            alive = [s.proc.poll() is None for s in servers]
        finally:
            codes = [stop_server(s) for s in servers]
        problems = server_problems(servers)
        problems += [f"[server {i}] died during the run" for i, ok in enumerate(alive) if not ok]
        # Uvicorn re-raises the SIGTERM it handled, so -15 is a clean stop too.
        problems += [
            f"[server {i}] exit code {c}"
            for i, c in enumerate(codes)
            if c not in (0, -signal.SIGTERM)
        ]
        return summarise(outcome, opts, pinned, codes, problems, server_warnings(servers))


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--members", type=int, default=2, help="members per room (>= 2)")
    p.add_argument("--window", type=int, default=4, help="closed loop: unacked messages per member")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: total messages/s offered by all members together, "
        "evenly spread (default: closed loop)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for the last acks and deliveries after sending stops",
    )
    p.add_argument("--body-size", type=int, default=64, help="characters per message body")
    p.add_argument("--processes", type=int, default=1, help="server processes (needs Redis)")
    p.add_argument(
        "--database-url",
        help="default: a fresh SQLite file in a temp dir; "
        "a PostgreSQL database given here has its public schema DROPPED first",
    )
    p.add_argument("--redis-url", help="broker for --processes > 1 (MENTEO_REDIS_URL)")
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for the servers")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU this load generator uses")
    p.add_argument("--no-pin", action="store_true", help="do not pin server or client")
    p.add_argument("--tmpdir", help="where the SQLite file and server logs go")
    p.add_argument("--json", dest="json_path", help="also write the JSON result here")
    p.add_argument("--label", help="the setup column (default: from processes, DB, Redis)")
    a = p.parse_args(argv)
    if a.members < 2:
        p.error("--members must be at least 2: latency is measured at another member")
    if min(a.rooms, a.window, a.processes, a.body_size) < 1 or min(a.duration, a.warmup) < 0:
        p.error("counts must be positive and times not negative")
    if a.duration <= 0:
        p.error("--duration must be positive")
    if a.rate is not None and a.rate <= 0:
        p.error("--rate must be positive")
    if a.processes > 1 and not a.redis_url:
        p.error(
            "--processes > 1 needs --redis-url: without a broker members in other "
            "processes would not see each other's messages"
        )
    return Options(**vars(a))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        result = run(opts)
    except RuntimeError as exc:  # a server that would not start or a refused request
        log(f"failed: {exc}")
        return 2
    data = asdict(result)
    print(TABLE_HEADER)
    print(table_row(result))
    print()
    print(json.dumps(data, indent=2))
    if opts.json_path:
        Path(opts.json_path).write_text(json.dumps(data, indent=2) + "\n")
    return 0 if result.ordered and not result.errors and not result.server_problems else 1


if __name__ == "__main__":
    sys.exit(main())
