"""Soak and chaos: two server processes on PostgreSQL and a private Redis, thousands of
simulated mentors and mentees, and a chaos loop; then the database is checked against every
client. Loopback only. See docs/soak.md.

    . .venv/bin/activate
    python tests/soak/soak.py --clients 500 --duration 180      # about 5 minutes
    python tests/soak/soak.py                                   # 2000 clients, 10 minutes

What it does:
1. Drops and creates the database ``menteo_soak`` (``--db``), starts a private
   ``redis-server`` on a free port and two ``python -m realtime.cli serve`` processes (A
   and B) on fixed free ports, with ``MENTEO_AUTO_MIGRATE=1``, a random 48-byte secret and
   ``MENTEO_MAX_CONNECTIONS_PER_IP`` raised (every simulated client is 127.0.0.1).
2. Creates ``clients / 2`` rooms of a mentor and a mentee (``POST /api/rooms``) and
   connects every member's room socket over ``--ramp`` seconds with ``since=0``, so that
   each client receives the room's whole history. The load generator balances like nginx's
   ``least_conn`` (the running server with fewer of its sockets).
3. For ``--duration`` seconds each member acts every ``--interval`` seconds on average:
   ``chat.send`` with a unique id, or (``--checklist-share``) a checklist operation: add,
   toggle, rename, move, and for the mentor verify. The members of ``--notes-rooms`` of the
   rooms also type and delete words in the shared notes (pycrdt over the notes socket). If
   the server has the community feed: ``--feed-posters`` of the mentees post in their growth
   thread, ``--feed-writers`` of the users comment and react (REST, retried with the same
   ``Idempotency-Key``), and ``--feed-followers`` follow the community, half over
   ``/feed/ws`` and half over ``/feed/stream`` (SSE, resuming with ``Last-Event-ID``).
   Each client also closes its socket cleanly now and then (``--churn``) and reconnects.
4. Every 30-60 s (``--chaos-min``/``--chaos-max``) the chaos loop does one of: kill -9 a
   server (B unless ``--kill any``) and restart it on its port; kill Redis and restart it
   empty ``--redis-down`` seconds later; abort 10 % (``--drop``) of all client connections
   (``transport.abort()``: no close frame). The first action is a kill; then each kind once
   per round, in random order. Clients reconnect with jittered exponential backoff (0.2 s
   doubling to 5 s), resuming with ``since``/``epoch`` and resending every unacked
   operation with its original id.
5. Then: stop the load, finish the chaos action under way, let every outbox empty, wait
   until each client has applied its room's (and the feed's) last seq, and verify
   (tests/soak/verify.py): the database against every ack, every client's view, checklist,
   notes text and feed against the database, and presence once settled.
6. Writes the RSS plot (``--plot``), ``results.json``, ``samples.json`` and ``summary.md``
   into ``--out``, prints the summary, and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from feed import setup_feed
from infra import (
    PgServer,
    ProxyLoop,
    RedisServer,
    Sample,
    Sampler,
    Server,
    ThreadedProxy,
    launcher,
    reset_database,
    snapshot,
    token,
)
from report import before, flatness, lifetimes, plot
from sim import NotesUser, RoomUser, Sim
from sqlite_mode import SmallDisk, SqliteReader
from verify import (
    check_notes,
    verify,
    verify_feed,
    wait_caught_up,
    wait_feed_caught_up,
    wait_notes,
    wait_presence,
)

REPO = Path(__file__).resolve().parents[2]


def _setting(text: str) -> str:
    """``--server-env``: ``MENTEO_X=value``."""
    if not text.startswith("MENTEO_") or "=" not in text:
        raise argparse.ArgumentTypeError(f"not MENTEO_X=value: {text!r}")
    return text


def server_env(settings: list[str] | None) -> dict[str, str]:
    """``--server-env`` as the servers get it."""
    return dict(setting.split("=", 1) for setting in settings or [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=2000, help="simulated users (default 2000)")
    p.add_argument(
        "--rooms",
        type=int,
        default=None,
        help="rooms of a mentor and a mentee (default clients / 2; sets --clients)",
    )
    p.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    p.add_argument(
        "--interval",
        type=float,
        default=10,
        help="mean seconds between one user's operations (default 10)",
    )
    p.add_argument(
        "--checklist-share",
        type=float,
        default=0.3,
        help="share of operations that are checklist operations (default 0.3)",
    )
    p.add_argument(
        "--notes-rooms",
        type=float,
        default=0.1,
        help="share of rooms whose members also edit the notes (default 0.1)",
    )
    p.add_argument(
        "--notes-interval",
        type=float,
        default=5,
        help="mean seconds between one editor's notes edits (default 5)",
    )
    p.add_argument(
        "--feed-posters",
        type=float,
        default=0.05,
        help="share of rooms whose mentee posts in a growth thread (default 0.05)",
    )
    p.add_argument(
        "--feed-writers",
        type=float,
        default=0.1,
        help="share of users who comment and react (default 0.1)",
    )
    p.add_argument(
        "--feed-followers",
        type=float,
        default=0.1,
        help="share of users following the community feed, half over WebSocket, "
        "half over SSE (default 0.1)",
    )
    p.add_argument(
        "--feed-interval",
        type=float,
        default=30,
        help="mean seconds between one feed writer's writes (default 30)",
    )
    p.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="seconds over which clients first connect (default min(30, duration/6))",
    )
    p.add_argument("--chaos-min", type=float, default=30)
    p.add_argument("--chaos-max", type=float, default=60)
    p.add_argument(
        "--kill",
        choices=["b", "any"],
        default="b",
        help="which server kill -9 hits: always B (A lives the whole run, so its "
        "RSS curve is one unbroken lifetime), or either (default b)",
    )
    p.add_argument("--drop", type=float, default=0.1, help="share of sockets a drop aborts")
    p.add_argument("--redis-down", type=float, default=3, help="seconds Redis stays down")
    p.add_argument(
        "--kinds",
        default=None,
        help=f"chaos kinds, comma-separated (default all: {','.join(KINDS)}; with --sqlite "
        f"{','.join(SQLITE_KINDS)})",
    )
    p.add_argument(
        "--sqlite",
        action="store_true",
        help="the single-process shape: one server on a SQLite file in a small tmpfs of its "
        "own (root: mount -t tmpfs), no Redis; the chaos fills that disk and frees it",
    )
    p.add_argument("--disk-mib", type=int, default=64, help="--sqlite: the tmpfs size (MiB)")
    p.add_argument("--disk-full", type=float, default=3, help="seconds the disk stays full")
    p.add_argument(
        "--pg",
        choices=["private", "shared"],
        default="private",
        help="private: a PostgreSQL of its own (initdb, pg_ctl) that the chaos restarts; "
        "shared: --admin-dsn's server, never restarted (default private)",
    )
    p.add_argument("--pg-stop", choices=["fast", "immediate"], default="fast")
    p.add_argument("--pg-down", type=float, default=0, help="extra seconds PostgreSQL stays down")
    p.add_argument("--net-latency", type=float, default=0.2, help="seconds added each way")
    p.add_argument("--net-for", type=float, default=5, help="seconds the latency lasts")
    p.add_argument("--blackhole", type=float, default=3, help="seconds a blackhole lasts")
    p.add_argument("--no-chaos", action="store_true", help="load only (a baseline)")
    p.add_argument(
        "--no-handoff",
        action="store_true",
        help="room clients without handoff=1: a drained socket is closed 1012 at its turn",
    )
    p.add_argument(
        "--churn",
        type=float,
        default=120,
        help="mean seconds between a client's clean reconnects (0: never; default 120)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=_setting,
        metavar="MENTEO_X=VALUE",
        help="a setting for every server process (repeatable), e.g. MENTEO_DRAIN_RATE=100",
    )
    p.add_argument("--drain-timeout", type=float, default=120)
    p.add_argument("--sample", type=float, default=2, help="seconds between RSS samples")
    p.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="servers under tracemalloc keeping FRAMES frames (slower): what each allocated "
        "between the end of the warm-up and the last minutes before the rolling restart, "
        "and still holds, in OUT/tracemalloc-NAME.txt",
    )
    p.add_argument(
        "--src",
        type=Path,
        default=REPO,
        help="the tree whose realtime/ the servers run (default: this repository)",
    )
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db", default="menteo_soak", help="database to drop and create")
    p.add_argument("--out", type=Path, default=None, help="logs and results (default: a temp dir)")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="where to write the RSS plot (default OUT/soak-rss.png)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--rescore",
        type=Path,
        default=None,
        metavar="OUT",
        help="only score the memory of the finished run in OUT again, and rewrite its summary.md",
    )
    args = p.parse_args(argv)
    if args.kinds is None:
        args.kinds = ",".join(SQLITE_KINDS if args.sqlite else KINDS)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := set(args.kinds) - set(KINDS) - set(SQLITE_KINDS):
        p.error(f"unknown chaos kinds: {sorted(unknown)}")
    if args.rooms is not None:
        args.clients = 2 * args.rooms
    args.rooms = args.clients // 2
    if args.ramp is None:
        args.ramp = min(30.0, args.duration / 6)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    return args


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def create_rooms(servers: list[Server], headers: dict[str, str], count: int) -> list[str]:
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(i: int) -> str:
            body = {
                "title": f"Soak room {i}",
                "members": [
                    {"user_id": f"m{i}", "name": f"Mentor {i}", "role": "mentor"},
                    {"user_id": f"e{i}", "name": f"Mentee {i}", "role": "mentee"},
                ],
            }
            async with sem:
                resp = await http.post(
                    servers[i % len(servers)].url + "/api/rooms", json=body, headers=headers
                )
            resp.raise_for_status()
            return str(resp.json()["id"])

        return await asyncio.gather(*(one(i) for i in range(count)))


KINDS = ("kill", "redis", "drop", "pg", "latency", "reset", "blackhole", "rolling")
SQLITE_KINDS = ("diskfull", "drop")  # --sqlite: one process, no Redis, no PostgreSQL
STORE_KINDS = (
    "redis",
    "pg",
    "latency",
    "reset",
    "blackhole",
    "diskfull",
)  # no client socket closes


@dataclass
class Links:
    """The fault proxies between one server process and its stores."""

    redis: ThreadedProxy
    pg: ThreadedProxy

    def both(self) -> tuple[ThreadedProxy, ThreadedProxy]:
        return self.redis, self.pg


async def chaos_loop(
    args: argparse.Namespace,
    sim: Sim,
    servers: list[Server],
    redis: RedisServer,
    pg: PgServer | None,
    links: dict[str, Links],
    disk: SmallDisk | None,
    stop: asyncio.Event,
    t0: float,
    events: list[dict[str, Any]],
    recoveries: list[asyncio.Task[None]],
) -> None:
    rng = random.Random(args.seed + 1)
    kinds_on = [k for k in args.kinds if k != "rolling"]
    if pg is None:
        kinds_on = [k for k in kinds_on if k != "pg"]
    if not links:
        kinds_on = [k for k in kinds_on if k not in ("latency", "reset", "blackhole")]
    if disk is None:
        kinds_on = [k for k in kinds_on if k != "diskfull"]
    if len(servers) < 2:  # a single process: nothing serves while it is away
        kinds_on = [k for k in kinds_on if k not in ("redis",)]
    rest = [k for k in kinds_on if k != "kill"]

    def kinds() -> Any:
        # A kill first, so that the survivor holds every socket early in the run (the warm-up
        # of the memory comparison covers it); then each kind once per round, in random order.
        if "kill" in kinds_on:
            yield "kill"
        yield from rng.sample(rest, len(rest))
        while kinds_on:  # none (``--kinds rolling``): the rolling restart alone, once
            yield from rng.sample(kinds_on, len(kinds_on))

    order = kinds()
    load_end = time.monotonic() + args.duration
    rolled = "rolling" not in args.kinds
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(args.chaos_min, args.chaos_max))
            return
        # The rolling restart comes once, late in the load: it ends server A's lifetime, and
        # the memory check judges that lifetime up to there.
        if not rolled and load_end - time.monotonic() < args.chaos_max + 20:
            kind, rolled = "rolling", True
        else:
            kind = next(order, None)
            if kind is None:
                continue
        t = time.monotonic() - t0
        event: dict[str, Any] = {"t": round(t, 1), "kind": kind}
        affected: list[Any]
        if kind == "kill":
            victim = servers[-1] if args.kill == "b" else rng.choice(servers)
            affected = [h for h in sim.holders() if h.server is victim and h.is_open()]
            victim.kill()
            # Healed at once: the clients need only the other process.
            event["healed"] = round(time.monotonic() - t0, 1)
            recoveries.append(asyncio.create_task(recovered(sim, event, t0, affected)))
            await asyncio.sleep(rng.uniform(1, 3))  # the chaos: down for 1-3 s
            took = await victim.start()
            what = f"kill -9 server {victim.name}; restarted, ready {took:.1f} s after start"
        elif kind == "rolling":
            # One process at a time, the other serving (docs/deploy.md): one event each.
            for n, server in enumerate(servers):
                if n:
                    events.append(event)
                    t = time.monotonic() - t0
                    event = {"t": round(t, 1), "kind": kind}
                group = [h for h in sim.holders() if h.server is server and h.is_open()]
                event["healed"] = event["t"]
                event["affected"] = len(group)
                recoveries.append(asyncio.create_task(recovered(sim, event, t0, group)))
                code, took_stop = await server.stop()
                took = await server.start()
                event["what"] = (
                    f"rolling restart {n + 1}/{len(servers)}: SIGTERM server {server.name} "
                    f"(exit {code} in {took_stop:.1f} s), ready again {took:.1f} s later"
                )
                print(f"[{t:6.1f}s] chaos: {event['what']}", flush=True)
            events.append(event)
            continue
        elif kind == "redis":
            affected = list(sim.users)
            redis.kill()
            await asyncio.sleep(args.redis_down)  # the chaos: Redis down this long
            await redis.start()
            event["healed"] = time.monotonic() - t0
            what = f"Redis killed, restarted after {args.redis_down:.0f} s"
        elif kind == "pg":
            assert pg is not None
            affected = list(sim.users)
            started = time.monotonic()
            await pg.restart(args.pg_down, mode=args.pg_stop)
            event["healed"] = time.monotonic() - t0
            what = (
                f"PostgreSQL stopped (-m {args.pg_stop}) and started: down "
                f"{time.monotonic() - started:.1f} s"
            )
        elif kind == "diskfull":
            assert disk is not None
            affected = list(sim.users)
            await asyncio.to_thread(disk.truncate_wal, disk.path / "menteo.db")
            taken = await asyncio.to_thread(disk.fill)
            await asyncio.sleep(args.disk_full)  # the chaos: no byte free this long
            disk.free()
            event["healed"] = time.monotonic() - t0
            what = (
                f"disk full ({taken / 2**20:.1f} MiB filler on the {disk.size_mib} MiB tmpfs) "
                f"for {args.disk_full:.0f} s, then freed"
            )
        elif kind in ("latency", "reset", "blackhole"):
            target = rng.choice(servers)
            proxies = links[target.name].both()
            affected = [u for u in sim.users]
            if kind == "latency":
                for proxy in proxies:
                    proxy.latency = args.net_latency
                await asyncio.sleep(args.net_for)  # the chaos: a slow network this long
                for proxy in proxies:
                    proxy.latency = 0.0
                what = (
                    f"server {target.name} <-> Redis and PostgreSQL: +{args.net_latency * 1000:.0f}"
                    f" ms each way for {args.net_for:.0f} s"
                )
            elif kind == "reset":
                n = sum(proxy.reset() for proxy in proxies)
                what = f"server {target.name} <-> Redis and PostgreSQL: {n} connections reset"
            else:
                for proxy in proxies:
                    proxy.blackhole(True)
                await asyncio.sleep(args.blackhole)  # the chaos: nothing moves this long
                for proxy in proxies:
                    proxy.blackhole(False)
                what = (
                    f"server {target.name} <-> Redis and PostgreSQL: blackhole for "
                    f"{args.blackhole:.0f} s"
                )
            event["healed"] = time.monotonic() - t0
        else:
            affected = sim.drop(args.drop)
            event["healed"] = round(time.monotonic() - t0, 1)
            recoveries.append(asyncio.create_task(recovered(sim, event, t0, affected)))
            what = f"aborted {len(affected)} sockets"
        event["what"] = what
        event["healed"] = round(event["healed"], 1)
        event["affected"] = len(affected)
        events.append(event)
        print(f"[{t:6.1f}s] chaos: {what}", flush=True)
        if kind in STORE_KINDS:
            recoveries.append(asyncio.create_task(recovered(sim, event, t0, affected)))


async def recovered(
    sim: Sim, event: dict[str, Any], t0: float, affected: list[Any], limit: float = 60
) -> None:
    """How long after the fault every affected client was live again and caught up: its
    socket open, at its room's highest acked seq, and every operation it made before the
    fault was healed acked. Measured from the fault itself (``t``) and from its end
    (``healed``: the store back, the blackhole lifted; for a kill or a drop the same
    moment, since the other process serves at once)."""
    healed_at = t0 + event["healed"]
    pending = set(range(len(affected)))
    # A client whose socket the fault ends (a kill, a drop, a rolling restart) counts only on
    # a new connection: a SIGTERM takes a moment to close the old one.
    lost = event["kind"] not in STORE_KINDS
    before = [_connection(h) for h in affected]
    last = healed_at
    # Where the time goes: when each affected client was open again (its welcome), apart
    # from when it had also caught up (its resent operations acked, its room's seq reached).
    opened: dict[int, float] = {}
    while pending and time.monotonic() - healed_at < limit:
        now = time.monotonic()
        for i in list(pending):
            h = affected[i]
            if lost and _connection(h) is before[i]:
                continue
            if i not in opened and h.is_open():
                opened[i] = now
            done = h.recovered(healed_at) if hasattr(h, "recovered") else h.is_open()
            if done:
                pending.discard(i)
                last = now
                # The last to recover, for the report, with its attempts since the fault.
                event["slowest"] = _holder(h) + _attempts(h, t0 + event["t"])
        if pending:
            await asyncio.sleep(0.05)  # a look at the affected clients until the limit
    if pending:
        event["recovered_s"] = None
        event["not_recovered"] = len(pending)
        event["slowest"] = ", ".join(
            f"{_holder(affected[i])}: "
            + ("same connection" if _connection(affected[i]) is before[i] else "reconnected")
            + (", open" if affected[i].is_open() else ", not open")
            for i in sorted(pending)[:3]
        )
    else:
        event["recovered_s"] = round(max(0.0, last - healed_at), 2)
        event["from_fault_s"] = round(last - t0 - event["t"], 2)
    if opened:
        live = sorted(at - healed_at for at in opened.values())
        event["open_p50_s"] = round(max(0.0, live[len(live) // 2]), 2)
        event["open_max_s"] = round(max(0.0, live[-1]), 2)
    # How long each room client that lost its socket was away (its old socket's end to its
    # next welcome): a drain spreads the closes, so this, not the drain's length, is the
    # time a client had no live room.
    fault_at = t0 + event["t"]
    gaps = [
        (h.closed_at - fault_at, h.welcomed_at - h.closed_at)
        for h in affected
        if getattr(h, "closed_at", 0.0) >= fault_at and h.welcomed_at > h.closed_at
    ]
    away = sorted(gap for _, gap in gaps)
    took = sorted(h.move_took for h in affected if getattr(h, "moved_at", 0.0) >= fault_at)
    if took:
        event["handed_off"] = len(took)  # moved to their next socket before the old one closed
        event["move_p50_s"] = round(took[len(took) // 2], 2)  # ``reconnect`` to next welcome
        event["move_max_s"] = round(took[-1], 2)
    if away:
        event["away_p50_s"] = round(away[len(away) // 2], 2)
        event["away_max_s"] = round(away[-1], 2)
        event["away_by_second"] = _by_second(gaps)


def _by_second(gaps: list[tuple[float, float]]) -> list[list[float]]:
    """Time away by the second (from the fault) the socket ended in: [second, clients, p50,
    longest]. A fresh process slow in its first seconds shows as long gaps early on."""
    seconds: dict[int, list[float]] = {}
    for closed, gap in gaps:
        seconds.setdefault(int(closed), []).append(gap)
    return [
        [second, len(g), round(sorted(g)[len(g) // 2], 2), round(max(g), 2)]
        for second, g in sorted(seconds.items())
    ]


def _holder(holder: Any) -> str:
    """A client as the report names it: its kind, user and server."""
    server = getattr(getattr(holder, "server", None), "name", "?")
    kind = {True: " sse", False: " ws"}.get(getattr(holder, "sse", None), "")
    return f"{type(holder).__name__}{kind} {getattr(holder, 'user_id', '?')} (on {server})"


def _attempts(holder: Any, since: float) -> str:
    """A room client's connection attempts after ``since``: seconds from it, how long each
    took, where, and how it ended."""
    tried = [a for a in getattr(holder, "attempts", ()) if a[0] >= since]
    if not tried:
        return ""
    return "; attempts: " + ", ".join(
        f"+{at - since:.2f} s {server} {took:.2f} s {outcome}"
        for at, took, server, outcome in tried
    )


def _connection(holder: Any) -> object:
    """The holder's current connection object (None between two)."""
    return getattr(holder, "ws", None) or getattr(holder, "stream", None)


async def progress(sim: Sim, sampler: Sampler, t0: float, stop: asyncio.Event) -> None:
    shown = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 30)
            return
        s = sim.stats
        acked = sum(len(u.acks) for u in sim.users)
        lag = pct(sampler.lags[-120:], 0.99) * 1000
        print(
            f"[{time.monotonic() - t0:6.1f}s] sockets {sim.open_sockets()}  sent "
            f"{sum(s.sent.values())}  acked {acked}  outbox "
            f"{sum(len(u.outbox) for u in sim.users)}  violations {len(s.violations)}  "
            f"loop lag p99 {lag:.0f} ms",
            flush=True,
        )
        for violation in s.violations[shown : shown + 5]:  # the first few, as they happen
            print(f"          violation: {violation}", flush=True)
        shown = len(s.violations)


def scan_log(path: Path) -> dict[str, Any]:
    """Count a server log's warnings and errors by message (ids and numbers blanked)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    kinds: Counter[str] = Counter()
    errors = 0
    for line in text.splitlines():
        match = re.match(r"(?:\S+ \S+ )?(WARNING|ERROR|CRITICAL):?\s+(?:\S+: )?(.*)", line)
        if match is None:
            continue
        level, message = match.groups()
        errors += level != "WARNING"
        message = re.sub(r"[0-9a-f]{32}", "<id>", message)
        message = re.sub(r"\d+(\.\d+)?", "N", message)
        kinds[f"{level} {message[:110]}"] += 1
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "errors": errors,
        "warnings": sum(kinds.values()) - errors,
        "messages": dict(kinds.most_common()),
    }


async def run(args: argparse.Namespace) -> int:
    out = args.out or Path(tempfile.mkdtemp(prefix="menteo-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    plot_path = args.plot or out / "soak-rss.png"
    secret = secrets.token_urlsafe(48)
    ttl = args.duration + 7200
    print(
        f"soak: {args.clients} clients in {args.rooms} rooms, {args.duration:.0f} s, "
        f"seed {args.seed}, servers from {args.src}, output in {out}",
        flush=True,
    )

    # SIGTERM or Ctrl-C: cancel the run, so that the finally below kills what it started.
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)

    pg: PgServer | None = None
    links: dict[str, Links] = {}
    disk: SmallDisk | None = None
    base_env = {
        "MENTEO_SECRET": secret,
        "MENTEO_AUTO_MIGRATE": "1",
        # Every simulated client connects from 127.0.0.1: the per-address limit (checked
        # before the token, default 500) would refuse most of them with 1013.
        "MENTEO_MAX_CONNECTIONS_PER_IP": str(2 * args.clients + 1000),
        **server_env(args.server_env),
    }
    servers = []
    redis = RedisServer(out, maxclients=1000)

    def traced(name: str) -> tuple[Path, int] | None:
        return (out / f"tracemalloc-{name}.txt", args.tracemalloc) if args.tracemalloc else None

    pg_dsn: str | None = None
    proxy_loop: ProxyLoop | None = None
    if args.sqlite:
        disk = SmallDisk(out / "disk", args.disk_mib)
        disk.mount()
        env = {**base_env, "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{disk.path}/menteo.db"}
        servers.append(launcher("A", env, args.src.resolve(), out / "server-A.log", traced("A")))
    else:
        if args.pg == "private":
            pg = PgServer(out, max_connections=300)
            await asyncio.to_thread(pg.init)
            await pg.start()
            admin_dsn = pg.admin_dsn
        else:
            admin_dsn = args.admin_dsn
        await reset_database(admin_dsn, args.db)
        pg_dsn = admin_dsn.rsplit("/", 1)[0] + "/" + args.db
        await redis.start()
    for name in () if args.sqlite else ("A", "B"):
        assert pg_dsn is not None
        # Each server reaches Redis and PostgreSQL through proxies of its own, so that the
        # chaos can slow or cut one server's links while the other's are fine.
        redis_port, pg_port = redis.port, int(pg_dsn.rsplit(":", 1)[1].split("/")[0])
        if pg is not None:
            # On a loop of their own: this process's loop is busy with every client.
            proxy_loop = proxy_loop or ProxyLoop()
            link = Links(ThreadedProxy(redis.port, proxy_loop), ThreadedProxy(pg.port, proxy_loop))
            for proxy in link.both():
                await proxy.start()
            links[name] = link
            redis_port, pg_port = link.redis.port, link.pg.port
        host_db = pg_dsn.split("://", 1)[1].rsplit(":", 1)[0]
        env = {
            **base_env,
            "MENTEO_DATABASE_URL": f"postgresql+asyncpg://{host_db}:{pg_port}/{args.db}",
            "MENTEO_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        servers.append(
            launcher(name, env, args.src.resolve(), out / f"server-{name}.log", traced(name))
        )
    sim = Sim(servers, args.seed)
    sim.handoff = not args.no_handoff
    sim.churn = args.churn
    sim.max_edits = int(args.duration / min(args.notes_interval, args.feed_interval) * 3) + 10
    sampler = Sampler(servers, redis, sim.open_sockets, args.sample)
    sampler.pg_dsn = pg_dsn
    chaos_events: list[dict[str, Any]] = []
    recoveries: list[asyncio.Task[None]] = []
    phases: dict[str, float] = {}
    stop_sampling = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    service = {"authorization": "Bearer " + token(secret, "soak", "Soak", ttl, "service")}
    exit_codes: dict[str, tuple[int | None, float]] = {}
    try:
        for server in servers:  # A creates the schema before B starts
            await server.start()
        room_ids = await create_rooms(servers, service, args.rooms)
        tokens = {
            f"{p}{i}": token(secret, f"{p}{i}", f"{name} {i}", ttl)
            for i in range(args.rooms)
            for p, name in (("m", "Mentor"), ("e", "Mentee"))
        }
        max_ops = int(args.duration / args.interval * 3) + 10
        notes_rooms = set(range(round(args.rooms * args.notes_rooms)))
        for i, room_id in enumerate(room_ids):
            for user_id, role in ((f"m{i}", "mentor"), (f"e{i}", "mentee")):
                tok = tokens[user_id]
                sim.users.append(
                    RoomUser(
                        sim,
                        room_id,
                        user_id,
                        role,
                        tok,
                        interval=args.interval,
                        checklist_share=args.checklist_share,
                        max_ops=max_ops,
                    )
                )
                if i in notes_rooms:
                    sim.notes.append(NotesUser(sim, room_id, user_id, tok, args.notes_interval))

        # The feed (skipped on a server without one): posters are mentees; writers and
        # followers are spread over all users.
        rng = random.Random(args.seed + 2)
        users = sorted(tokens)
        posters = [f"e{i}" for i in range(round(args.rooms * args.feed_posters))]
        writers = posters + rng.sample(
            [u for u in users if u not in posters],
            max(0, round(len(users) * args.feed_writers) - len(posters)),
        )
        followers = rng.sample(users, round(len(users) * args.feed_followers))
        world = await setup_feed(
            sim, servers[0], service, tokens, posters, writers, followers, args.feed_interval
        )
        if world is not None:
            sim.followers.extend(world.followers)

        t0 = sim.t0 = time.monotonic()
        sampler.mark_start()
        background += [
            asyncio.create_task(sampler.run(stop_sampling)),
            asyncio.create_task(sampler.loop_lag(stop_sampling)),
            asyncio.create_task(progress(sim, sampler, t0, stop_sampling)),
        ]
        everyone: list[Any] = sim.holders()
        random.Random(args.seed).shuffle(everyone)
        for n, user in enumerate(everyone):
            user.task = sim.spawn(
                user.run(args.ramp * n / len(everyone)), f"{type(user).__name__} {user.user_id}"
            )
        feed_writers = [
            sim.spawn(w.run(rng.uniform(0, args.ramp)), f"feed writer {w.user_id}")
            for w in (world.writers if world is not None else [])
        ]
        stop_chaos = asyncio.Event()
        chaos = asyncio.create_task(
            asyncio.sleep(0)
            if args.no_chaos
            else chaos_loop(
                args, sim, servers, redis, pg, links, disk, stop_chaos, t0, chaos_events, recoveries
            )
        )

        if args.tracemalloc:  # at the end of the warm-up, and before the rolling restart
            warmed = min(args.duration / 3, args.ramp + 90)
            late = max(warmed, args.duration - args.chaos_max - 120)  # its dump takes long
            await asyncio.sleep(warmed)
            snapshot(servers)  # each one stops its loop for a few seconds here
            await asyncio.sleep(late - warmed)
            snapshot(servers)
            await asyncio.sleep(args.duration - late)
        else:
            await asyncio.sleep(args.duration)  # the load runs this long
        sim.stop_load()
        cpu = sampler.cpu_report()  # over the load, chaos included
        phases["load_end"] = time.monotonic() - t0
        print(
            f"[{phases['load_end']:6.1f}s] load stopped; finishing chaos and draining", flush=True
        )
        stop_chaos.set()
        await chaos
        if recoveries:
            await asyncio.wait(recoveries)

        # Drain: every outbox empties (acks), then every client reaches its room's last seq.
        actors = [u.actor_task for u in everyone if getattr(u, "actor_task", None) is not None]
        _, late = await asyncio.wait(actors + feed_writers, timeout=args.drain_timeout)
        phases["outboxes_empty"] = time.monotonic() - t0
        db: Any = (
            SqliteReader(disk.path / "menteo.db")
            if disk is not None
            else await asyncpg.connect(pg_dsn)
        )
        behind = await wait_caught_up(db, sim, 60)
        if world is not None:
            behind += await wait_feed_caught_up(db, world, 60)
        phases["caught_up"] = time.monotonic() - t0
        async with httpx.AsyncClient(base_url=servers[0].url, timeout=30) as http:
            await wait_notes(sim, http, service, 60)
            phases["notes_synced"] = time.monotonic() - t0
            # Presence settles within MENTEO_PRESENCE_TTL (30 s) of the last chaos event.
            last_chaos = max((e["t"] for e in chaos_events), default=0.0) + 10
            settle = max(0.0, last_chaos + 35 - (time.monotonic() - t0))
            presence_wrong = await wait_presence(sim, settle + 10)
            phases["presence_checked"] = time.monotonic() - t0
            print(f"[{phases['notes_synced']:6.1f}s] drained; verifying", flush=True)
            stop_sampling.set()
            verdict = await verify(db, sim, http, service)
            feed_verdict = None if world is None else await verify_feed(db, world, verdict)
            for u in everyone:
                if getattr(u, "actor_task", None) in late:
                    verdict.fail(f"{u.user_id}: outbox not empty after {args.drain_timeout} s")
            for line in behind:
                verdict.fail("not caught up: " + line)
            verdict.presence_wrong = len(presence_wrong)
            verdict.presence_failures = presence_wrong[:10]
            # Close every socket cleanly; the last notes socket of a room compacts its notes.
            sim.closing = True
            for user in everyone:
                if user.is_open():
                    with contextlib.suppress(Exception):
                        await (user.ws.close() if user.ws is not None else user.stream.aclose())
            await asyncio.wait([u.task for u in everyone if u.task is not None], timeout=30)
            # The servers (other processes: no event reaches us) compact each room's notes
            # as its last socket closes; 2 s lets most finish so the check below reads the
            # compacted form. It holds the same text either way: nothing passes on timing.
            await asyncio.sleep(2)
            await check_notes(sim, http, service, verdict, live=False)
        await db.close()
        if world is not None:
            await world.close()
        for server in servers:
            exit_codes[server.name] = await server.stop()
    finally:
        stop_sampling.set()
        for task in background:
            task.cancel()
        for user in sim.holders():
            if user.task is not None:
                user.task.cancel()
            if getattr(user, "actor_task", None) is not None:
                user.actor_task.cancel()
        for server in servers:
            server.kill()
        redis.kill()
        for link in links.values():
            for proxy in link.both():
                await proxy.close()
        if proxy_loop is not None:
            proxy_loop.stop()
        if pg is not None:
            await pg.destroy()
        if disk is not None:
            disk.free()
            disk.unmount()

    logs = {s.name: scan_log(s.log_path) for s in servers}
    for name, (code, took) in exit_codes.items():
        if code not in (0, -15) or took > 10:
            verdict.fail(f"server {name}: SIGTERM gave exit status {code} after {took:.1f} s")
    for v in sim.stats.violations:
        verdict.fail("live: " + v)

    memory = score_memory(
        sampler.samples, [s.name for s in servers], chaos_events, phases, history_full(vars(args))
    )
    title = (
        f"menteo-realtime soak: {args.clients} clients, {args.duration:.0f} s, "
        f"{len(chaos_events)} chaos events"
    )
    try:
        plot(sampler.samples, [s.name for s in servers], chaos_events, phases, plot_path, title)
    except ImportError:  # matplotlib is in the bench extra: the checks need no plot
        print("no matplotlib (pip install -e '.[bench]'): the RSS plot is skipped", flush=True)

    s = sim.stats
    lags = sampler.lags
    results: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "ok": verdict.ok,
        "verdict": {**asdict(verdict), "stored_by_type": dict(verdict.stored_by_type)},
        "feed": None
        if feed_verdict is None
        else {
            **asdict(feed_verdict),
            "by_type": dict(feed_verdict.by_type),
            "writes": dict(world.writes),
            "retries": dict(world.retries),
            "refused": dict(world.refused),
            "posters": len(posters),
            "writers": len(writers),
            "followers_ws": sum(1 for f in world.followers if not f.sse),
            "followers_sse": sum(1 for f in world.followers if f.sse),
        },
        "chaos": chaos_events,
        "phases": phases,
        "stats": {
            "sent": dict(s.sent),
            "connects": dict(s.connects),
            "connect_failures": dict(s.connect_failures),
            "closes": dict(s.closes),
            "errors": dict(s.errors),
            "resent_reconnect": s.resent_reconnect,
            "resent_timeout": s.resent_timeout,
            "resent_unavailable": s.resent_unavailable,
            "dropped": s.dropped,
            "churned": s.churned,
            "moved": s.moved,
            "move_failures": s.move_failures,
            "violations": len(s.violations),
        },
        "latency_ms": {
            "ack_p50": pct(s.ack_latency, 0.5) * 1000,
            "ack_p99": pct(s.ack_latency, 0.99) * 1000,
            "ack_max": max(s.ack_latency, default=0) * 1000,
            "delivery_p50": pct(s.delivery_latency, 0.5) * 1000,
            "delivery_p99": pct(s.delivery_latency, 0.99) * 1000,
            "delivery_max": max(s.delivery_latency, default=0) * 1000,
            "before_peer": sim.before_peer,
            "slowest_deliveries": [
                {"seconds": round(took, 1), "sent_at_s": round(at, 1), "what": what}
                for took, at, what in sorted(s.slowest, reverse=True)
            ],
        },
        "cpu_cores": cpu,
        "loop_lag_ms": {
            "p50": pct(lags, 0.5) * 1000,
            "p99": pct(lags, 0.99) * 1000,
            "max": max(lags, default=0) * 1000,
        },
        "servers": {
            sv.name: {
                "starts": sv.starts,
                "kills": sv.kills,
                "log": logs[sv.name],
                "log_path": str(sv.log_path),
                "sigterm": exit_codes.get(sv.name),
            }
            for sv in servers
        },
        "memory": memory,
        "generator_rss_mib": [round(x.generator_rss / 2**20, 1) for x in sampler.samples[::15]],
        "plot": str(plot_path),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "samples.json").write_text(json.dumps([asdict(x) for x in sampler.samples]))
    summary = render_summary(results)
    (out / "summary.md").write_text(summary)
    print("\n" + summary)
    return 0 if verdict.ok else 1


def history_full(args: dict[str, Any]) -> float:
    """When (seconds into the load) the hub's kept history of a room is full on average: it
    keeps each room's newest ``MENTEO_HISTORY_LIMIT`` (50) messages, and until a room has
    that many the cache grows with the run (bounded: a cache filling is not a leak). A room
    of two members gets 2 x (1 - checklist share) / interval messages a second; the rooms
    start at the end of the ramp at the latest."""
    limit = int(server_env(args.get("server_env")).get("MENTEO_HISTORY_LIMIT", 50))
    per_second = 2 * (1 - float(args["checklist_share"])) / float(args["interval"])
    return float(args["ramp"]) + (limit / per_second if per_second > 0 else 0)


def score_memory(
    samples: list[Sample],
    servers: list[str],
    chaos: list[dict[str, Any]],
    phases: dict[str, float],
    full: float,
) -> list[dict[str, Any]]:
    """Each process lifetime's RSS, last third of the load against the first third, after a
    warm-up: until the rooms' kept history is full (``history_full``), and past the first
    kill, so that the survivor has held every socket once and its allocator has seen the
    run's peak. A restarted process gets 30 s (its kept history is seeded full from the
    database, once the rooms have that much). ``before_kills``: the RSS before each kill of
    the other process, the steps a peak leaves (``report.before``)."""
    kills = [e["t"] for e in chaos if e["kind"] == "kill"]
    first_kill = kills[0] if kills else None
    warmup = max(full, 30.0 if first_kill is None else first_kill + 60)
    out = []
    for name in servers:
        for life in lifetimes(samples, name):
            wait = warmup - life.start if life.start < 1 else max(30.0, full - life.start)
            f = flatness(life, wait, phases["load_end"])
            if f is None:
                continue
            out.append(
                {
                    "server": name,
                    "pid": life.pid,
                    "from_s": round(life.start),
                    "to_s": round(life.end),
                    "first_third_mib": round(f.first_rss, 1),
                    "last_third_mib": round(f.last_rss, 1),
                    "first_third_sockets": f.first_conns,
                    "last_third_sockets": f.last_conns,
                    "peak_mib": round(f.peak_rss, 1),
                    "growth_pct": round(f.growth * 100, 1),
                    "flat": f.flat,
                    "before_kills": [[round(t), round(mib, 1)] for t, mib in before(life, kills)],
                }
            )
    return out


def rescore(out: Path) -> int:
    """Score the memory of a finished run again (``--rescore OUT``) and rewrite its summary."""
    results = json.loads((out / "results.json").read_text())
    samples = [Sample(**x) for x in json.loads((out / "samples.json").read_text())]
    servers = sorted(results["servers"])
    results["memory"] = score_memory(
        samples, servers, results["chaos"], results["phases"], history_full(results["args"])
    )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    summary = render_summary(results)
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


def feed_lines(r: dict[str, Any]) -> list[str]:
    f = r["feed"]
    if f is None:
        return ["- feed: not on this server (skipped)"]
    return [
        f"- feed: {f['posters']} posters, {f['writers']} writers, {f['followers_ws']} WebSocket "
        f"and {f['followers_sse']} SSE followers; acked posts {f['acked_posts']}, comments "
        f"{f['acked_comments']}, reaction changes {f['writes'].get('reaction', 0)} "
        f"(requests retried: {sum(f['retries'].values())}); feed events stored {f['events']} "
        f"({', '.join(f'{k} {n}' for k, n in sorted(f['by_type'].items()))})",
        f"- feed followers whose view equals the database: {f['views_equal']} of "
        f"{f['followers']}; whose last reaction counts equal the database: "
        f"{f['counts_equal']} of {f['followers']} (posts with stale counts: "
        f"{f['posts_with_stale_counts']})",
    ]


def memory_verdict(memory: list[dict[str, Any]]) -> str:
    judged = [m["flat"] for m in memory if m["flat"] is not None]
    if not judged:
        return "n/a"
    return "yes" if all(judged) else "NO"


KIND_NAMES = {
    "kill": "kill -9 + restart",
    "redis": "Redis restart",
    "drop": "drop",
    "pg": "PostgreSQL restart",
    "latency": "store latency",
    "reset": "store links reset",
    "blackhole": "store blackhole",
    "rolling": "rolling restart (per process)",
    "diskfull": "disk full",
}


def render_summary(r: dict[str, Any]) -> str:
    v, s, lat, cpu, a = r["verdict"], r["stats"], r["latency_ms"], r["cpu_cores"], r["args"]
    kinds = Counter(e["kind"] for e in r["chaos"])
    recov = [e.get("recovered_s") for e in r["chaos"] if "recovered_s" in e]
    worst = max((x for x in recov if x is not None), default=None)
    away = max((e["away_max_s"] for e in r["chaos"] if "away_max_s" in e), default=None)
    lines = [
        f"## Soak: {a['clients']} clients, {a['duration']:.0f} s — durable data "
        f"{'PASS' if not v['failures'] else 'FAIL'}, presence "
        f"{'PASS' if not v['presence_wrong'] else 'FAIL'}, memory flat: "
        f"{memory_verdict(r['memory'])}",
        "",
        f"- command: `python tests/soak/soak.py --clients {a['clients']} --duration "
        f"{a['duration']:.0f}` (seed {a['seed']})",
        f"- chaos: {len(r['chaos'])} events — "
        + ", ".join(f"{n} x {KIND_NAMES.get(k, k)}" for k, n in sorted(kinds.items()))
        + f" ({s['dropped']} sockets aborted by drops); worst recovery "
        + ("n/a" if worst is None else f"{worst:.2f} s")
        + ("" if None not in recov else " (some NOT recovered within 60 s)")
        + ("" if away is None else f"; longest a room client was away {away:.2f} s"),
        "",
        "| at (s) | kind | what | affected clients | recovered after the fault ended (s) "
        "| from the fault (s) | last to recover |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {e['t']:.0f} | {e['kind']} | {e['what']} | {e.get('affected', '')} | "
            + (
                f"{e['recovered_s']:.2f} | {e['from_fault_s']:.2f} |"
                if e.get("recovered_s") is not None
                else f"NOT ({e.get('not_recovered', '?')} left) | |"
            )
            + f" {e.get('slowest', '')}"
            + (
                f"; open again: half {e['open_p50_s']:.2f} s, all {e['open_max_s']:.2f} s"
                if "open_max_s" in e
                else ""
            )
            + (
                f"; away (socket closed to welcomed again): half {e['away_p50_s']:.2f} s, "
                f"longest {e['away_max_s']:.2f} s"
                if "away_max_s" in e
                else ""
            )
            + (
                f"; handed off (never without a live socket): {e['handed_off']}, each move "
                f"p50 {e['move_p50_s']:.2f} s, longest {e['move_max_s']:.2f} s"
                if "handed_off" in e
                else ""
            )
            + " |"
            for e in r["chaos"]
        ),
        "",
        f"- operations sent: {sum(s['sent'].values())} "
        f"({', '.join(f'{k} {n}' for k, n in sorted(s['sent'].items()))})",
        f"- **events acked {v['acked']}, stored {v['stored']}, delivered "
        f"{v['delivered']} of {v['expected_deliveries']} expected** (every stored event to both "
        f"members); refused by the checklist rules {v['refused']} "
        f"(none stored); rooms with seqs 1..last, no gap, no duplicate: all {v['rooms']}"
        if not v["failures"]
        else f"- events acked {v['acked']}, stored {v['stored']}, delivered {v['delivered']} of "
        f"{v['expected_deliveries']} expected; refused {v['refused']}",
        f"- presence at the end (every client shows both members online): "
        f"{2 * v['rooms'] - v['presence_wrong']} of {2 * v['rooms']} right",
        f"- client views equal to the database: {v['views_equal']} of {2 * v['rooms']}; "
        f"checklists equal to GET …/checklist: {v['checklists_equal']} of {2 * v['rooms']}",
        f"- notes: {v['notes_equal']} of {v['notes_rooms']} rooms' editors equal to GET …/notes "
        f"({v['notes_words']} words, every typed word present once, every deleted word absent)",
        *feed_lines(r),
        f"- reconnects: {s['connects'].get('room', 0)} room welcomes, "
        f"{s['connects'].get('notes', 0)} notes connections ({s['churned']} clean reconnects "
        f"by clients; {s.get('moved', 0)} handed off to their next socket before the old one "
        f"closed, {s.get('move_failures', 0)} hand-offs failed); failed attempts "
        f"{sum(s['connect_failures'].values())}; ops resent after reconnect "
        f"{s['resent_reconnect']}, after {15} s without ack {s['resent_timeout']}, after "
        f"`unavailable` {s['resent_unavailable']}",
        "- close codes seen by clients: "
        + ", ".join(f"{k}: {n}" for k, n in sorted(s["closes"].items())),
        "- error frames: "
        + (", ".join(f"{k}: {n}" for k, n in sorted(s["errors"].items())) or "none"),
        f"- latency (ms, including chaos): ack p50 {lat['ack_p50']:.0f}, p99 "
        f"{lat['ack_p99']:.0f}, max {lat['ack_max']:.0f}; send→peer p50 "
        f"{lat['delivery_p50']:.0f}, p99 {lat['delivery_p99']:.0f}, max {lat['delivery_max']:.0f}"
        f" ({lat.get('before_peer', 0)} sent before the peer's first connection not counted)",
        "  - slowest send→peer: "
        + (
            "; ".join(
                f"{x['seconds']} s ({x['what']}, sent at {x['sent_at_s']} s)"
                for x in lat.get("slowest_deliveries", [])[:3]
            )
            or "-"
        ),
        f"- CPU (cores, mean over the run): server A {cpu.get('A', 0):.2f}, B "
        f"{cpu.get('B', 0):.2f}, load generator {cpu['generator']:.2f}, PostgreSQL "
        f"(our backends) {cpu['postgres']:.2f}, Redis {cpu['redis']:.2f}; whole machine "
        f"{cpu['machine_busy']:.2f} of 2 (others' runs included); generator loop lag p99 "
        f"{r['loop_lag_ms']['p99']:.0f} ms, max {r['loop_lag_ms']['max']:.0f} ms",
        "- server logs: "
        + "; ".join(
            f"{n}: {x['log']['tracebacks']} tracebacks, {x['log']['errors']} ERROR lines, "
            f"{x['log']['warnings']} WARNING lines"
            for n, x in r["servers"].items()
        ),
    ]
    for name, x in r["servers"].items():
        code, took = x["sigterm"] or (None, 0)
        lines.append(
            f"  - {name}: started {x['starts']} times, killed {x['kills']}; SIGTERM at the "
            f"end: exit status {code} after {took:.1f} s; log messages:"
        )
        lines += [f"    - {n} x `{m}`" for m, n in list(x["log"]["messages"].items())[:12]]
    lines += [
        "",
        "| server | pid | lifetime (s) | RSS first third (MiB) | last third | growth | "
        "sockets first → last | peak | flat |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["memory"]:
        lines.append(
            f"| {m['server']} | {m['pid']} | {m['from_s']}-{m['to_s']} | "
            f"{m['first_third_mib']} | {m['last_third_mib']} | {m['growth_pct']:+.1f} % | "
            f"{m['first_third_sockets']:.0f} → {m['last_third_sockets']:.0f} | {m['peak_mib']} | "
            f"{ {True: 'yes', False: 'NO', None: 'n/a (load changed)'}[m['flat']] } |"
        )
    if not r["memory"]:
        lines.append("| (no lifetime long enough after warm-up) | | | | | | | | |")
    for m in r["memory"]:
        if m.get("before_kills"):  # absent in results.json of older runs
            steps = ", ".join(f"{mib} ({t} s)" for t, mib in m["before_kills"])
            lines.append(f"\n{m['server']} ({m['pid']}), RSS MiB before each kill: {steps}")
    if v["failures"]:
        lines += ["", "Failures:", *(f"- {x}" for x in v["failures"][:50])]
    if v["presence_failures"]:
        lines += [
            "",
            f"Presence wrong at the end ({v['presence_wrong']} clients; first 10):",
            *(f"- {x}" for x in v["presence_failures"]),
        ]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    if args.rescore is not None:
        return rescore(args.rescore)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(run(args))
    except asyncio.CancelledError:
        print("interrupted: servers and Redis stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
