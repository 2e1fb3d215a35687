"""Reproductions: presence loses connected users (Redis deployments).

1. ``redis-restart``: Redis restarts empty (the documented setup keeps nothing durable in
   it). The processes resubscribe, but the presence of sockets that stay open is never
   written again: ``RedisPresence._heartbeat`` refreshes with ``ZADD ... XX`` (existing
   entries only) and nothing re-runs the join. A member who connects afterwards is told
   (welcome ``presence``) that a connected member is offline, for as long as that member's
   socket lives.
2. ``storm``: many sockets join at once (every client of a killed process reconnecting)
   while Redis answers slowly (here: stopped for one second). Each join is an ``EVALSHA`` on
   the presence client's pool; redis-py's asyncio pool holds at most 100 connections by
   default and raises ``MaxConnectionsError`` instead of waiting, so joins fail ("presence
   join failed", logged and skipped as best effort), and as in (1) the heartbeat never adds
   the missing entries: those users stay offline for the others.

    . .venv/bin/activate
    python tests/soak/repro_presence.py             # both; exit status 1 while they fail
    python tests/soak/repro_presence.py storm

One server process on a temporary SQLite file and a private redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
import orjson
import websockets
from infra import RedisServer, Server, free_port

REPO = Path(__file__).resolve().parents[2]


def token(secret: str, user: str, role: str | None = None) -> str:
    claims = {"sub": user, "name": user.title(), "exp": int(time.time()) + 3600}
    if role:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm="HS256")


async def rooms(server: Server, secret: str, count: int) -> list[str]:
    service = {"authorization": "Bearer " + token(secret, "backend", "service")}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        out = []
        for i in range(count):
            body = {"title": f"R{i}", "members": [
                {"user_id": f"m{i}", "name": "M", "role": "mentor"},
                {"user_id": f"e{i}", "name": "E", "role": "mentee"}]}
            out.append((await http.post("/api/rooms", json=body, headers=service)).json()["id"])
        return out


async def connect(server: Server, secret: str, room: str, user: str) -> tuple[object, set[str]]:
    ws = await websockets.connect(f"{server.ws}/rooms/{room}/ws?token={token(secret, user)}",
                                  open_timeout=60)
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


async def storm(server: Server, redis: RedisServer, secret: str, count: int = 300) -> bool:
    ids = await rooms(server, secret, count)
    # Redis stalls for a second (a slow command, a fork for a snapshot, a busy host) while
    # the sockets join: the joins pile up past the pool's 100 connections.
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)
    asyncio.get_running_loop().call_later(1.0, redis.proc.send_signal, signal.SIGCONT)
    first = await asyncio.gather(*(connect(server, secret, r, f"m{i}") for i, r in enumerate(ids)))
    await asyncio.sleep(3)
    second = [await connect(server, secret, r, f"e{i}") for i, r in enumerate(ids)]
    missing = sum(1 for i, (_, seen) in enumerate(second) if f"m{i}" not in seen)
    print(f"storm: {count} mentors joined at once; {missing} of their mentees, joining after, "
          f"see the (connected) mentor offline")
    for ws, _ in [*first, *second]:
        await ws.close()  # type: ignore[attr-defined]
    return missing == 0


async def main(which: list[str]) -> int:
    src = Path(os.environ.get("MENTEO_SRC", REPO))
    tmp = Path(tempfile.mkdtemp(prefix="menteo-repro-"))
    secret = secrets.token_urlsafe(48)
    redis = RedisServer(tmp)
    await redis.start()
    env = {"MENTEO_SECRET": secret, "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/r.db",
           "MENTEO_REDIS_URL": redis.url, "MENTEO_MAX_CONNECTIONS_PER_IP": "5000"}
    server = Server("A", free_port(), env, src, tmp / "server.log")
    await server.start()
    ok = True
    try:
        if "redis-restart" in which:
            ok &= await redis_restart(server, redis, secret)
        if "storm" in which:
            ok &= await storm(server, redis, secret)
    finally:
        server.kill()
        redis.kill()
    log = (tmp / "server.log").read_text()
    print(f"server log: {log.count('presence join failed')} 'presence join failed', "
          f"{log.count('MaxConnectionsError')} MaxConnectionsError ({tmp / 'server.log'})")
    print("ok" if ok else "BUG: connected users shown offline")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:] or ["redis-restart", "storm"])))
