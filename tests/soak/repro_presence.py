"""Reproductions: presence shows connected users offline (Redis deployments).

1. ``redis-restart``: Redis restarts empty (the documented setup keeps nothing durable in
   it). Up to 356d9fb the presence of sockets that stayed open was never written again
   (``RedisPresence._heartbeat`` refreshed with ``ZADD ... XX``, existing entries only), so a
   member connecting afterwards was told a connected member is offline. Fixed in c1905b4
   (the heartbeat rewrites the entries).
2. ``redis-restart-early``: as 1, but the second member connects before the next heartbeat
   (every ``MENTEO_PRESENCE_TTL`` / 3 = 10 s) has written the first one back. Its welcome
   says the first member is offline, and when the heartbeat puts them back no
   ``presence.join`` is sent, so its view stays wrong for as long as both sockets live.
   Failing up to b06aef4; fixed in 3503306 (a ``presence.sync`` snapshot follows; this
   script applies it).
3. ``storm``: many sockets join at once (every client of a killed process reconnecting)
   while Redis answers slowly (here: stopped for one second). Up to 356d9fb each join was
   an ``EVALSHA`` on redis-py's default asyncio pool, which holds 100 connections and raises
   ``MaxConnectionsError`` instead of waiting: joins failed ("presence join failed") and
   those users stayed offline for the others. Fixed in c1905b4 (blocking pools).

    . .venv/bin/activate
    python tests/soak/repro_presence.py                       # all three; exit 1 if any fails
    python tests/soak/repro_presence.py redis-restart-early
    MENTEO_SRC=/path/to/checkout python tests/soak/repro_presence.py   # another tree

One server process on a temporary SQLite file and a private redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

import httpx
import orjson
import websockets
from infra import RedisServer, Server, launcher, token

REPO = Path(__file__).resolve().parents[2]


async def rooms(server: Server, secret: str, count: int) -> list[str]:
    service = {"authorization": "Bearer " + token(secret, "backend", role="service")}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        out = []
        for i in range(count):
            body = {
                "title": f"R{i}",
                "members": [
                    {"user_id": f"m{i}", "name": "M", "role": "mentor"},
                    {"user_id": f"e{i}", "name": "E", "role": "mentee"},
                ],
            }
            out.append((await http.post("/api/rooms", json=body, headers=service)).json()["id"])
        return out


async def connect(server: Server, secret: str, room: str, user: str) -> tuple[object, set[str]]:
    ws = await websockets.connect(
        f"{server.ws}/rooms/{room}/ws?token={token(secret, user)}", open_timeout=60
    )
    welcome = orjson.loads(await ws.recv())
    return ws, {p["user_id"] for p in welcome["presence"]}


async def redis_restart(server: Server, redis: RedisServer, secret: str) -> bool:
    (room,) = await rooms(server, secret, 1)
    mentor, _ = await connect(server, secret, room, "m0")
    redis.kill()
    await redis.start()  # empty, as with --save "" --appendonly no
    await asyncio.sleep(12)  # the broker reconnects; a few presence heartbeats go by
    mentee, seen = await connect(server, secret, room, "e0")
    print(f"redis-restart: m0 is connected; e0 joins after the restart and sees {sorted(seen)}")
    for ws in (mentor, mentee):
        await ws.close()  # type: ignore[attr-defined]
    return seen == {"m0", "e0"}


async def redis_restart_early(server: Server, redis: RedisServer, secret: str) -> bool:
    """As ``redis_restart``, but the second member joins before the next heartbeat has
    written the first one back: its view must still end right (a presence.sync)."""
    (room,) = await rooms(server, secret, 1)
    mentor, _ = await connect(server, secret, room, "m0")
    redis.kill()
    await redis.start()
    await asyncio.sleep(1)  # the scenario: the mentee joins 1 s in, before the next heartbeat
    mentee, seen = await connect(server, secret, room, "e0")
    view = set(seen)
    try:
        async with asyncio.timeout(20):  # two heartbeats (MENTEO_PRESENCE_TTL / 3 = 10 s)
            while "m0" not in view:
                frame = orjson.loads(await mentee.recv())  # type: ignore[attr-defined]
                if frame["type"] == "presence.join":
                    view.add(frame["user_id"])
                elif frame["type"] == "presence.sync":
                    view = {p["user_id"] for p in frame["presence"]}
    except TimeoutError:
        pass
    print(
        f"redis-restart-early: e0 joined 1 s after the restart and saw {sorted(seen)}; "
        f"20 s later it shows {sorted(view)}"
    )
    for ws in (mentor, mentee):
        await ws.close()  # type: ignore[attr-defined]
    return view == {"m0", "e0"}


async def storm(server: Server, redis: RedisServer, secret: str, count: int = 300) -> bool:
    ids = await rooms(server, secret, count)
    # Redis stalls for a second (a slow command, a fork for a snapshot, a busy host) while
    # the sockets join: the joins pile up past the pool's 100 connections.
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)
    asyncio.get_running_loop().call_later(1.0, redis.proc.send_signal, signal.SIGCONT)
    first = await asyncio.gather(*(connect(server, secret, r, f"m{i}") for i, r in enumerate(ids)))
    await asyncio.sleep(3)  # the scenario: past the 1 s stall, the mentees join later
    second = [await connect(server, secret, r, f"e{i}") for i, r in enumerate(ids)]
    missing = sum(1 for i, (_, seen) in enumerate(second) if f"m{i}" not in seen)
    print(
        f"storm: {count} mentors joined at once; {missing} of their mentees, joining after, "
        f"see the (connected) mentor offline"
    )
    for ws, _ in [*first, *second]:
        await ws.close()  # type: ignore[attr-defined]
    return missing == 0


async def main(which: list[str]) -> int:
    src = Path(os.environ.get("MENTEO_SRC", REPO))
    tmp = Path(tempfile.mkdtemp(prefix="menteo-repro-"))
    secret = secrets.token_urlsafe(48)
    redis = RedisServer(tmp, maxclients=1000)
    await redis.start()
    env = {
        "MENTEO_SECRET": secret,
        "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/r.db",
        "MENTEO_REDIS_URL": redis.url,
        "MENTEO_MAX_CONNECTIONS_PER_IP": "5000",
    }
    server = launcher("A", env, src, tmp / "server.log")
    await server.start()
    ok = True
    try:
        if "redis-restart" in which:
            ok &= await redis_restart(server, redis, secret)
        if "redis-restart-early" in which:
            ok &= await redis_restart_early(server, redis, secret)
        if "storm" in which:
            ok &= await storm(server, redis, secret)
    finally:
        server.kill()
        redis.kill()
    log = (tmp / "server.log").read_text()
    print(
        f"server log: {log.count('presence join failed')} 'presence join failed', "
        f"{log.count('MaxConnectionsError')} MaxConnectionsError ({tmp / 'server.log'})"
    )
    print("ok" if ok else "BUG: connected users shown offline")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:] or ["redis-restart", "redis-restart-early", "storm"])))
