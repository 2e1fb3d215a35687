"""python-socketio doing the same room broadcast as raw_broadcast.py (ASGI under Uvicorn).

    python bench/reference/socketio_server.py --port 8766 [--redis-url redis://127.0.0.1:6379/0]

The client connects to ``/socket.io/?EIO=4&transport=websocket`` and sends the namespace
CONNECT packet with ``{"room": R, "user": U}`` as its auth payload. Events mirror our
protocol's frames: ``welcome`` (to the joiner, with the room's last 50 messages),
``presence.join`` / ``presence.leave`` (to the others), ``chat.send {id, body}`` →
``chat.message`` to the whole room (one ``emit(..., room=R)``) then ``ack {id, seq}`` to the
sender, ``typing {active}`` → ``presence.typing`` to the others.

Served like ours: Uvicorn, ``ws="websockets-sansio"``, uvloop, no permessage-deflate. With
``--redis-url`` it uses ``AsyncRedisManager``, so several processes share rooms (seq and
history are then per process: this reference keeps no global order).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import deque
from typing import Any

import socketio
import uvicorn

HISTORY = 50


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(redis_url: str | None) -> Any:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins="*",
        client_manager=manager,
        logger=False,
        engineio_logger=False,
    )
    seqs: dict[str, int] = {}
    history: dict[str, deque[dict[str, Any]]] = {}
    members: dict[str, tuple[str, str]] = {}  # sid -> (room, user)
    online: dict[str, dict[str, int]] = {}  # room -> user -> sockets

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        auth = auth or {}
        room, user = str(auth.get("room", "lobby")), str(auth.get("user", "anonymous"))
        members[sid] = (room, user)
        here = online.setdefault(room, {})
        here[user] = here.get(user, 0) + 1
        await sio.enter_room(sid, room)
        await sio.emit(
            "welcome",
            {
                "room": {"id": room, "title": room},
                "you": {"user_id": user, "name": user, "role": "mentee"},
                "seq": seqs.get(room, 0),
                "epoch": "socketio",
                "recovered": False,
                "history": list(history.get(room, ())),
                "presence": [{"user_id": u, "name": u} for u in sorted(here)],
            },
            to=sid,
        )
        await sio.emit("presence.join", {"user_id": user, "name": user}, room=room, skip_sid=sid)

    @sio.event
    async def disconnect(sid: str, *args: Any) -> None:
        room, user = members.pop(sid, ("", ""))
        here = online.get(room, {})
        if user in here:
            here[user] -= 1
            if not here[user]:
                del here[user]
                await sio.emit("presence.leave", {"user_id": user}, room=room)

    @sio.on("chat.send")
    async def chat_send(sid: str, data: dict[str, Any]) -> None:
        room, user = members[sid]
        seq = seqs[room] = seqs.get(room, 0) + 1
        msg = {
            "seq": seq,
            "id": data.get("id"),
            "author": {"user_id": user, "name": user},
            "body": data.get("body"),
            "ts": now_iso(),
        }
        history.setdefault(room, deque(maxlen=HISTORY)).append(msg)
        await sio.emit("chat.message", msg, room=room)
        await sio.emit("ack", {"id": data.get("id"), "seq": seq}, to=sid)

    @sio.on("typing")
    async def typing(sid: str, data: dict[str, Any]) -> None:
        room, user = members[sid]
        await sio.emit(
            "presence.typing",
            {"user_id": user, "active": bool(data.get("active"))},
            room=room,
            skip_sid=sid,
        )

    return socketio.ASGIApp(sio)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--redis-url", default=None)
    args = p.parse_args()
    uvicorn.run(
        build(args.redis_url),
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="off",
        backlog=2048,
    )
