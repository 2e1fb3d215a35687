"""Durable chat load: acked messages/s and send→receive latency against real server processes.

Starts ``menteo-realtime serve`` itself (one or more processes, on a fresh database), creates
rooms through the REST API, connects real WebSocket members and has every member send in a
closed loop with a bounded window of unacked messages. Prints a Markdown table row and JSON.

    python bench/chat_load.py --rooms 100 --members 2 --duration 10

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# The project is not necessarily installed: run against the checkout this file is in.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from realtime.auth import issue_token  # noqa: E402

SUBPROTOCOL = "menteo.v1.json"
# High enough that the per-connection token bucket never refuses a frame: the limiter is
# a policy, not what this bench measures.
UNLIMITED_RATE = "1000000"
# Hard caps so that no loop can run away even if the clock or the server misbehaves.
MAX_SENDS_PER_MEMBER = 1_000_000
MAX_FRAMES_PER_MEMBER = 50_000_000
MAX_PROBLEMS = 20  # order problems and server log lines kept in the results
CONNECT_CONCURRENCY = 32  # sockets opened at once: a burst of 200 handshakes is not the test
PG_TABLES = "event, member, room, stream, meta, alembic_version"


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


# Server processes -----------------------------------------------------------------------


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time so far, from /proc (None where there is no /proc)."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the parenthesised command name; utime and stime are 14th and 15th.
        rest = stat.rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def can_pin() -> bool:
    """Pinning only helps with a core each for server and client; taskset does the server."""
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def server_env(database_url: str, redis_url: str | None, secret: str) -> dict[str, str]:
    # Inherited MENTEO_* variables would silently change what is measured: drop them all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")}
    env.update({
        "MENTEO_SECRET": secret,
        "MENTEO_DATABASE_URL": database_url,
        "MENTEO_REDIS_URL": redis_url or "",
        "MENTEO_RATE_PER_SECOND": UNLIMITED_RATE,
        "MENTEO_RATE_BURST": UNLIMITED_RATE,
        "PYTHONUNBUFFERED": "1",
        # `python -m realtime.cli` must find this checkout wherever the bench is run from.
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    })
    return env


def start_server(env: dict[str, str], log_path: Path, cpus: str | None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "realtime.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # no per-socket access log lines
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return Server(port, proc, log_path)


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited with {server.proc.returncode}:\n"
                                   + "\n".join(server.log_lines()[-40:]))
            with contextlib.suppress(httpx.HTTPError):
                if http.get(server.http + "/readyz").status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError("server not ready in time:\n" + "\n".join(server.log_lines()[-40:]))


def stop_server(server: Server, timeout: float = 15.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


def server_problems(servers: list[Server]) -> list[str]:
    """Log lines that signal trouble (the server runs at --log-level warning, so few)."""
    lines = [f"[server {i}] {line}" for i, s in enumerate(servers) for line in s.log_lines()
             if "Traceback" in line or "ERROR" in line or "Error" in line]
    return lines[:MAX_PROBLEMS]


async def reset_postgres(url: str) -> None:
    """Drop the schema so each run starts on an empty database (the server recreates it)."""
    import asyncpg  # only needed for PostgreSQL runs

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {PG_TABLES} CASCADE")
    finally:
        await conn.close()


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
    # Keyed by (room, client id): receivers of any member look up when it was sent.
    sent_at: dict[tuple[int, str], float] = field(default_factory=dict)

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
        members = [{"user_id": f"u{i}-{j}", "name": f"User {i}-{j}",
                    "role": "mentor" if j == 0 else "mentee"} for j in range(opts.members)]
        async with gate:
            resp = await http.post(f"{base}/api/rooms", headers=headers,
                                   json={"title": f"bench {i}", "members": members})
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/rooms: {resp.status_code} {resp.text[:200]}")
        room_id: str = resp.json()["id"]
        return room_id

    async with httpx.AsyncClient(timeout=30.0) as http:
        return list(await asyncio.gather(*(one(i, http) for i in range(opts.rooms))))


async def connect_member(
    ws_base: str, room_id: str, room: int, index: int, user_id: str, secret: str, window: int
) -> Member:
    token = issue_token(secret, user_id, user_id, ttl=3600)
    ws = await connect(f"{ws_base}/rooms/{room_id}/ws?token={token}",
                       subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                       compression=None, open_timeout=30)
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
            return await connect_member(server.ws, room_ids[room], room, index,
                                        f"u{room}-{j}", secret, opts.window)

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
            await member.ws.send(orjson.dumps({"type": "chat.send", "id": cid, "body": body})
                                 .decode())
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
        member.window.release()
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
    return all(m.closed is not None or (m.seqs[-1] if m.seqs else 0) >= newest[m.room]
               for m in members)


async def drain(members: list[Member], seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if settled(members):
            return True
        await asyncio.sleep(0.05)
    return settled(members)


def order_problems(members: list[Member]) -> list[str]:
    """Each room: every member saw the same gap-free seqs, covering every acked seq."""
    problems: list[str] = []
    by_room: dict[int, list[Member]] = {}
    for m in members:
        by_room.setdefault(m.room, []).append(m)
    for room, group in sorted(by_room.items()):
        ref = group[0]
        acked = sorted(s for m in group for s in m.acked)
        for m in group:
            expected = list(range(m.first_seq + 1, m.first_seq + 1 + len(m.seqs)))
            if m.closed is not None:
                problems.append(f"room {room} {m.user_id}: {m.closed}")
            elif m.seqs != expected:
                problems.append(f"room {room} {m.user_id}: seqs not gap-free and ordered")
            elif (m.first_seq, m.seqs) != (ref.first_seq, ref.seqs):
                problems.append(f"room {room} {m.user_id}: differs from {ref.user_id}")
        if len(set(acked)) != len(acked):
            problems.append(f"room {room}: one seq acked twice")
        elif acked and not set(acked) <= set(ref.seqs):
            problems.append(f"room {room}: an acked seq was never delivered")
    return problems[:MAX_PROBLEMS]


@dataclass
class CpuSample:
    client: float = 0.0
    servers: list[float | None] = field(default_factory=list)


def cpu_now(servers: list[Server]) -> CpuSample:
    return CpuSample(time.process_time(), [s.cpu_seconds() for s in servers])


async def sample_cpu(servers: list[Server], win: Window) -> tuple[CpuSample, CpuSample]:
    """CPU used by client and servers during exactly the measured interval."""
    await asyncio.sleep(max(0.0, win.start - time.perf_counter()))
    first = cpu_now(servers)
    await asyncio.sleep(max(0.0, win.end - time.perf_counter()))
    return first, cpu_now(servers)


@dataclass
class LoadOutcome:
    win: Window
    members: list[Member]
    drained: bool
    cpu: tuple[CpuSample, CpuSample]


async def run_load(servers: list[Server], secret: str, opts: Options) -> LoadOutcome:
    service = issue_token(secret, "bench", "Bench", role="service")
    room_ids = await create_rooms(servers[0].http, service, opts)
    members = await connect_all(servers, room_ids, secret, opts)
    log(f"{len(members)} members connected in {len(room_ids)} rooms; warming up")
    t0 = time.perf_counter()
    win = Window(t0 + opts.warmup, t0 + opts.warmup + opts.duration)
    hard_end = win.end + opts.drain_timeout + 5.0  # receivers end by then whatever happens
    body = "m" * opts.body_size
    receivers = [asyncio.create_task(receiver(m, win, hard_end)) for m in members]
    senders = [asyncio.create_task(sender(m, win, body, win.end)) for m in members]
    cpu = await sample_cpu(servers, win)
    await asyncio.gather(*senders)
    drained = await drain(members, opts.drain_timeout)
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    await asyncio.gather(*(asyncio.wait_for(m.ws.close(), 5) for m in members),
                         return_exceptions=True)
    return LoadOutcome(win, members, drained, cpu)


# Results ------------------------------------------------------------------------------------


def percentile_ms(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)


def cpu_share(before: float | None, after: float | None, seconds: float) -> float | None:
    """Fraction of one core used over the interval."""
    if before is None or after is None:
        return None
    return round((after - before) / seconds, 3)


@dataclass
class Result:
    setup: str
    rooms: int
    members: int
    window: int
    duration_s: float
    warmup_s: float
    acked_per_s: float
    delivered_per_s: float
    e2e_p50_ms: float | None
    e2e_p90_ms: float | None
    e2e_p99_ms: float | None
    e2e_samples: int
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    sent_total: int
    acked_total: int
    errors: dict[str, int]
    disconnects: int
    drained: bool
    ordered: bool
    order_problems: list[str]
    server_cpu: list[float | None]
    client_cpu: float | None
    server_exit_codes: list[int]
    server_problems: list[str]
    pinned: bool
    processes: int
    database: str
    redis: bool


def setup_label(opts: Options) -> str:
    if opts.label:
        return opts.label
    db = "PostgreSQL" if (opts.database_url or "").startswith("postgres") else "SQLite"
    parts = [f"{opts.processes} process{'es' if opts.processes > 1 else ''}", db]
    if opts.redis_url:
        parts.insert(1, "Redis")
    return " + ".join(parts)


def summarise(
    out: LoadOutcome, opts: Options, pinned: bool, codes: list[int], problems: list[str]
) -> Result:
    win, members = out.win, out.members
    seconds = win.end - win.start
    first, last = out.cpu
    order = order_problems(members)
    if not out.drained:
        order.insert(0, "not drained: some acks or deliveries never arrived")
    return Result(
        setup=setup_label(opts), rooms=opts.rooms, members=opts.members, window=opts.window,
        duration_s=opts.duration, warmup_s=opts.warmup,
        acked_per_s=round(win.acks / seconds, 1),
        delivered_per_s=round(win.deliveries / seconds, 1),
        e2e_p50_ms=percentile_ms(win.e2e, 50), e2e_p90_ms=percentile_ms(win.e2e, 90),
        e2e_p99_ms=percentile_ms(win.e2e, 99), e2e_samples=len(win.e2e),
        ack_p50_ms=percentile_ms(win.ack_latency, 50),
        ack_p99_ms=percentile_ms(win.ack_latency, 99),
        sent_total=sum(m.sent for m in members), acked_total=sum(len(m.acked) for m in members),
        errors=dict(win.errors), disconnects=sum(m.closed is not None for m in members),
        drained=out.drained, ordered=not order, order_problems=order,
        server_cpu=[cpu_share(a, b, seconds) for a, b in zip(first.servers, last.servers,
                                                              strict=True)],
        client_cpu=cpu_share(first.client, last.client, seconds),
        server_exit_codes=codes, server_problems=problems, pinned=pinned,
        processes=opts.processes, database="postgresql" if (opts.database_url or "")
        .startswith("postgres") else "sqlite", redis=bool(opts.redis_url),
    )


TABLE_HEADER = (
    "| setup | rooms x members | window | acked msg/s | delivered/s | send→recv p50 / p90 / p99 ms "
    "| send→ack p50 / p99 ms | server CPU | client CPU | errors | ordered |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def table_row(r: Result) -> str:
    cpu = " + ".join(fmt(c) for c in r.server_cpu)
    errors = sum(r.errors.values()) + r.disconnects
    return (
        f"| {r.setup} | {r.rooms} x {r.members} | {r.window} | {r.acked_per_s:.0f} "
        f"| {r.delivered_per_s:.0f} | {fmt(r.e2e_p50_ms)} / {fmt(r.e2e_p90_ms)} / "
        f"{fmt(r.e2e_p99_ms)} | {fmt(r.ack_p50_ms)} / {fmt(r.ack_p99_ms)} | {cpu} "
        f"| {fmt(r.client_cpu)} | {errors} | {'yes' if r.ordered else 'no'} |"
    )


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
                servers.append(start_server(env, Path(tmp, f"server-{i}.log"),
                                            opts.server_cpus if pinned else None))
                wait_ready(servers[-1])
            log(f"{len(servers)} server process(es) ready on ports "
                f"{', '.join(str(s.port) for s in servers)} (pinned: {pinned})")
            outcome = asyncio.run(run_load(servers, secret, opts))
            alive = [s.proc.poll() is None for s in servers]
        finally:
            codes = [stop_server(s) for s in servers]
        problems = server_problems(servers)
        problems += [f"[server {i}] died during the run" for i, ok in enumerate(alive) if not ok]
        # Uvicorn re-raises the SIGTERM it handled, so -15 is a clean stop too.
        problems += [f"[server {i}] exit code {c}" for i, c in enumerate(codes)
                     if c not in (0, -signal.SIGTERM)]
        return summarise(outcome, opts, pinned, codes, problems)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--members", type=int, default=2, help="members per room (>= 2)")
    p.add_argument("--window", type=int, default=4, help="unacked messages per member")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--drain-timeout", type=float, default=15.0,
                   help="seconds to wait for the last acks and deliveries after sending stops")
    p.add_argument("--body-size", type=int, default=64, help="characters per message body")
    p.add_argument("--processes", type=int, default=1, help="server processes (needs Redis)")
    p.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir; "
                   "a PostgreSQL database given here has its tables DROPPED first")
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
    if a.processes > 1 and not a.redis_url:
        p.error("--processes > 1 needs --redis-url: without a broker members in other "
                "processes would not see each other's messages")
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
