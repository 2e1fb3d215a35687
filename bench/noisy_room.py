"""Noisy room: an unrelated room's chat latency while one room runs the worst checklist mix.

Starts ``menteo-realtime serve`` with the default limits (nothing raised) on a fresh
database, then in one run:

1. **baseline**: a probe member sends chat in a quiet room at ``--probe-rate`` messages a
   second and times each send → ack (the writer's path: queue, group commit, ack);
2. **noisy**: the same probe while, in another room, the mentor and the mentee each run two
   sockets at the per-socket rate limit (20 frames/s each, 40/s per user: the user budget)
   sending checklist adds, moves (alternating to the same place, which grows position keys)
   and removes, and the mentor copies 500-step roadmaps as fast as the copy limit allows
   (a 429's ``Retry-After`` is honoured, as a script would).

It prints both phases' p50/p99 and their ratio, as a Markdown row and JSON. With ``--max-ratio``
the exit status is 1 when the noisy p99 is more than that many times the baseline's.

    python bench/noisy_room.py                      # 20 s a phase, SQLite
    python bench/noisy_room.py --smoke              # 3 s a phase (CI: the code path only)
    python bench/noisy_room.py --database-url postgresql+asyncpg://postgres@127.0.0.1/menteo_bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from chat_load import (
    SUBPROTOCOL,
    percentile_ms,
    reset_postgres,
    start_server,
    stop_server,
    wait_ready,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from menteo_testkit.server import child_env
from realtime.auth import issue_token

SOCKET_RATE = 20.0  # MENTEO_RATE_PER_SECOND's default: each noisy socket sends at it
ROADMAP_STEPS = 500  # the most a roadmap holds
MAX_OPS = 1_000_000  # hard bound on any loop


@dataclass
class Probe:
    ws: ClientConnection
    sent: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Noise:
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    copies: Counter[int] = field(default_factory=Counter)  # HTTP status -> count


def server_env(database_url: str, secret: str) -> dict[str, str]:
    # The defaults are the point: child_env drops every inherited MENTEO_* variable.
    return child_env(
        {
            "MENTEO_SECRET": secret,
            "MENTEO_DATABASE_URL": database_url,
            "MENTEO_AUTO_MIGRATE": "1",
        }
    )


async def open_socket(ws_base: str, room: str, user: str, secret: str) -> ClientConnection:
    token = issue_token(secret, user, user.title(), ttl=3600)
    ws = await connect(
        f"{ws_base}/rooms/{room}/ws?token={token}",
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
        open_timeout=30,
        max_size=None,
    )
    welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"expected welcome, got {welcome}")
    return ws


async def setup(base: str, service: dict[str, str], roadmaps: int) -> tuple[str, str, list[str]]:
    async with httpx.AsyncClient(base_url=base, headers=service, timeout=30) as http:
        rooms = []
        for title, a, b in (("quiet", "qa", "qb"), ("noisy", "mentor", "mentee")):
            members = [
                {"user_id": a, "name": a, "role": "mentor"},
                {"user_id": b, "name": b, "role": "mentee"},
            ]
            resp = await http.post("/api/rooms", json={"title": title, "members": members})
            resp.raise_for_status()
            rooms.append(resp.json()["id"])
        ids = []
        for r in range(roadmaps):
            steps = [{"title": f"step {r}-{n}"} for n in range(ROADMAP_STEPS)]
            resp = await http.post("/api/roadmaps", json={"title": f"roadmap {r}", "steps": steps})
            resp.raise_for_status()
            ids.append(resp.json()["id"])
    return rooms[0], rooms[1], ids


async def probe_reader(probe: Probe) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in probe.ws:
            frame = orjson.loads(raw)
            if frame.get("type") in ("ack", "error") and frame.get("id") in probe.sent:
                started = probe.sent.pop(frame["id"])
                if frame["type"] == "ack":
                    probe.latencies.append(time.perf_counter() - started)
                else:
                    probe.errors[frame.get("code", "?")] += 1


async def probe_phase(probe: Probe, tag: str, rate: float, seconds: float) -> list[float]:
    probe.latencies = []
    interval = 1.0 / rate
    start = time.perf_counter()
    for n in range(min(MAX_OPS, int(seconds * rate))):
        due = start + n * interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        cid = f"{tag}-{n}"
        probe.sent[cid] = time.perf_counter()
        frame = {"type": "chat.send", "id": cid, "body": "probe"}
        await probe.ws.send(orjson.dumps(frame).decode())
    for _ in range(200):  # the last acks, 10 s at most
        if not probe.sent:
            break
        await asyncio.sleep(0.05)  # a bounded poll
    probe.sent.clear()
    return list(probe.latencies)


async def drain(ws: ClientConnection, noise: Noise, acked: set[str]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame.get("type") == "ack":
                acked.add(frame["id"])
            elif frame.get("type") == "error":
                noise.errors[frame.get("code", "?")] += 1


async def churn(
    ws: ClientConnection, who: str, noise: Noise, acked: set[str], steps: list[str], until: float
) -> None:
    """At the socket's rate: adds; moves of one item that leapfrog between two places (its
    key grows until the list rebalances); removes of copied roadmap steps (then of its own
    items), so that the list stays near its 500-item cap and most operations succeed."""
    added: list[str] = []
    removed: set[str] = set()
    interval = 1.0 / SOCKET_RATE
    start = time.perf_counter()
    for n in range(MAX_OPS):
        due = start + n * interval
        if due >= until:
            return
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        live = [c for c in added if c in acked and c not in removed]
        kind = n % 4
        cid = f"{who}-{n}"
        if kind == 0:
            frame: dict[str, Any] = {"type": "checklist.add", "id": cid, "title": f"item {n}"}
            added.append(cid)
        elif kind in (1, 2) and len(live) >= 3:
            frame = {
                "type": "checklist.move",
                "id": cid,
                "item_id": live[2],
                "after": live[kind - 1],
            }
        elif steps or len(live) > 3:  # room for the adds: the list stays near its cap
            target = steps.pop() if steps else live[-1]
            removed.add(target)
            frame = {"type": "checklist.remove", "id": cid, "item_id": target}
        else:
            continue
        noise.ops[frame["type"]] += 1
        try:
            await ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed:
            return


async def copier(
    base: str, room: str, token: str, roadmaps: list[str], noise: Noise, until: float
) -> None:
    headers = {"authorization": "Bearer " + token}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        for n in range(MAX_OPS):
            if time.perf_counter() >= until:
                return
            resp = await http.post(
                f"/api/rooms/{room}/checklist", json={"roadmap_id": roadmaps[n % len(roadmaps)]}
            )
            noise.copies[resp.status_code] += 1
            wait = float(resp.headers.get("retry-after", "0")) if resp.status_code == 429 else 0
            await asyncio.sleep(min(wait, max(0.0, until - time.perf_counter())))


def cpu_seconds(pid: int | None) -> float:
    """The server's CPU time so far (user + system, Linux ``/proc``; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(
    name: str, values: list[float], cpu: float, own: float, seconds: float
) -> dict[str, Any]:
    """A phase's probe latencies, and the CPU the server and this client used (a busy
    machine, not a busy server, is what a high p99 beside a low CPU share points to)."""
    return {
        "phase": name,
        "acks": len(values),
        "p50_ms": percentile_ms(values, 50),
        "p99_ms": percentile_ms(values, 99),
        "max_ms": percentile_ms(values, 100),
        "server_cpu_pct": round(100 * cpu / seconds, 1),
        "client_cpu_pct": round(100 * own / seconds, 1),
    }


async def scenario(
    opts: argparse.Namespace, base: str, ws_base: str, secret: str, pid: int | None = None
) -> dict[str, Any]:
    service = {
        "authorization": "Bearer "
        + issue_token(secret, "backend", "Backend", role="service", ttl=3600)
    }
    quiet, noisy, roadmaps = await setup(base, service, opts.roadmaps)
    probe = Probe(await open_socket(ws_base, quiet, "qa", secret))
    reader = asyncio.create_task(probe_reader(probe))
    await probe_phase(probe, "warm", opts.probe_rate, 1.0)
    cpu, own = cpu_seconds(pid), cpu_seconds(os.getpid())
    baseline = await probe_phase(probe, "base", opts.probe_rate, opts.seconds)
    cpu_base, own_base = cpu_seconds(pid) - cpu, cpu_seconds(os.getpid()) - own

    noise = Noise()
    sockets = [
        await open_socket(ws_base, noisy, user, secret)
        for user in ("mentor", "mentor", "mentee", "mentee")
    ]
    acked: list[set[str]] = [set() for _ in sockets]
    drains = [asyncio.create_task(drain(ws, noise, acked[i])) for i, ws in enumerate(sockets)]
    until = time.perf_counter() + opts.seconds + 2.0  # noise starts first, ends after the probe
    # Each socket removes its own share of the copied steps (the copy's id scheme).
    steps = [f"roadmap:{r}:{n}" for r in reversed(roadmaps) for n in range(ROADMAP_STEPS, 0, -1)]
    tasks = [
        asyncio.create_task(churn(ws, f"s{i}", noise, acked[i], steps[i :: len(sockets)], until))
        for i, ws in enumerate(sockets)
    ]
    tasks.append(
        asyncio.create_task(
            copier(
                base,
                noisy,
                issue_token(secret, "mentor", "Mentor", ttl=3600),
                roadmaps,
                noise,
                until,
            )
        )
    )
    await asyncio.sleep(1.0)
    cpu, own = cpu_seconds(pid), cpu_seconds(os.getpid())
    noisy_lat = await probe_phase(probe, "noisy", opts.probe_rate, opts.seconds)
    cpu_noisy, own_noisy = cpu_seconds(pid) - cpu, cpu_seconds(os.getpid()) - own
    await asyncio.gather(*tasks)
    for ws in [*sockets, probe.ws]:
        await ws.close()
    await asyncio.gather(*drains, reader)
    async with httpx.AsyncClient(base_url=base, headers=service, timeout=30) as http:
        state = (await http.get(f"/api/rooms/{noisy}/checklist")).json()
    longest_key = max((len(i["pos"]) for i in state["items"]), default=0)
    b = summary("baseline", baseline, cpu_base, own_base, opts.seconds)
    q = summary("noisy", noisy_lat, cpu_noisy, own_noisy, opts.seconds)
    ratio = (q["p99_ms"] / b["p99_ms"]) if b["p99_ms"] and q["p99_ms"] else None
    return {
        "baseline": b,
        "noisy": q,
        "p99_ratio": round(ratio, 2) if ratio else None,
        "noise_ops": dict(noise.ops),
        "noise_errors": dict(noise.errors),
        "copies": {str(k): v for k, v in noise.copies.items()},
        "probe_errors": dict(probe.errors),
        "noisy_live_items": len(state["items"]),
        "longest_key": longest_key,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--probe-rate", type=float, default=10.0, help="probe chat messages/s")
    parser.add_argument("--roadmaps", type=int, default=2, help="500-step roadmaps to copy")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--cpus", default=None, help="pin the server (taskset -c)")
    parser.add_argument(
        "--max-ratio", type=float, default=None, help="exit 1 if noisy p99 > this x baseline p99"
    )
    parser.add_argument("--smoke", action="store_true", help="3 s phases: the code path only")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.seconds, opts.roadmaps = 3.0, 1
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        url = opts.database_url or f"sqlite+aiosqlite:///{tmp}/noisy.db"
        if url.startswith("postgresql"):
            asyncio.run(reset_postgres(url))
        server = start_server(server_env(url, secret), Path(tmp) / "server.log", opts.cpus)
        try:
            wait_ready(server)
            result = asyncio.run(scenario(opts, server.http, server.ws, secret, server.pid))
        finally:
            stop_server(server)
    b, q = result["baseline"], result["noisy"]
    print("| phase | acks | p50 ms | p99 ms | max ms | server CPU % |")
    print("|---|---|---|---|---|---|")
    for row in (b, q):
        print(
            f"| {row['phase']} | {row['acks']} | {row['p50_ms']} | {row['p99_ms']} "
            f"| {row['max_ms']} | {row['server_cpu_pct']} |"
        )
    print(f"noisy/baseline p99: {result['p99_ratio']}")
    print(json.dumps(result))
    if opts.max_ratio is not None and (
        result["p99_ratio"] is None or result["p99_ratio"] > opts.max_ratio
    ):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
