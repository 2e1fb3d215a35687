"""The Python limit: a bare ``websockets`` room server, ``websockets.broadcast`` fan-out.

It speaks the subset of our JSON room protocol (docs/protocol.md) that the load generator
uses, with the same frame shapes, and nothing else: no tokens, no database, no rate limits.

    python bench/reference/raw_broadcast.py --port 8765

``ws://HOST:PORT/rooms/{room}/ws?user=U``: rooms exist on first use. The first frame is a
``welcome`` (room, you, seq, history = the room's last 50 chat.message frames, presence);
``presence.join`` / ``presence.leave`` go to the others; ``chat.send {id, body}`` gets a
per-room seq, goes to every member as ``chat.message`` (encoded once, the same bytes to
all, with ``websockets.broadcast``), then an ``ack {id, seq}`` to the sender; ``typing
{active}`` goes to the others as ``presence.typing``; ``ping`` gets a ``pong``.

asyncio with uvloop when installed (as Uvicorn uses it), no permessage-deflate.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

HISTORY = 50


class Room:
    __slots__ = ("history", "id", "members", "seq")

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.members: dict[ServerConnection, str] = {}
        self.seq = 0
        self.history: deque[str] = deque(maxlen=HISTORY)


ROOMS: dict[str, Room] = {}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def handler(ws: ServerConnection) -> None:
    url = urlsplit(ws.request.path if ws.request else "/")
    parts = url.path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "rooms" or parts[2] != "ws":
        await ws.close(4404, "no such path")
        return
    user = parse_qs(url.query).get("user", ["anonymous"])[0]
    room = ROOMS.get(parts[1])
    if room is None:
        room = ROOMS[parts[1]] = Room(parts[1])
    others = list(room.members)
    room.members[ws] = user
    online = sorted(set(room.members.values()))
    welcome = (
        '{"type":"welcome","room":'
        + dumps({"id": room.id, "title": room.id})
        + ',"you":'
        + dumps({"user_id": user, "name": user, "role": "mentee"})
        + f',"seq":{room.seq},"epoch":"raw","recovered":false,"history":['
        + ",".join(room.history)
        + '],"presence":'
        + dumps([{"user_id": u, "name": u} for u in online])
        + "}"
    )
    try:
        await ws.send(welcome)
        broadcast(others, dumps({"type": "presence.join", "user_id": user, "name": user}))
        async for message in ws:
            try:
                frame = orjson.loads(message)
                kind = frame["type"]
            except Exception:
                await ws.send(
                    dumps(
                        {
                            "type": "error",
                            "id": None,
                            "code": "bad_frame",
                            "message": "cannot decode frame",
                        }
                    )
                )
                continue
            if kind == "chat.send":
                room.seq += 1
                cid = frame.get("id")
                out = dumps(
                    {
                        "type": "chat.message",
                        "seq": room.seq,
                        "id": cid,
                        "author": {"user_id": user, "name": user},
                        "body": frame.get("body"),
                        "ts": now_iso(),
                    }
                )
                room.history.append(out)
                broadcast(room.members, out)
                await ws.send(dumps({"type": "ack", "id": cid, "seq": room.seq}))
            elif kind == "typing":
                broadcast(
                    [m for m in room.members if m is not ws],
                    dumps(
                        {
                            "type": "presence.typing",
                            "user_id": user,
                            "active": bool(frame.get("active")),
                        }
                    ),
                )
            elif kind == "ping":
                await ws.send(dumps({"type": "pong", "id": frame.get("id")}))
            else:
                await ws.send(
                    dumps(
                        {
                            "type": "error",
                            "id": frame.get("id"),
                            "code": "unknown_type",
                            "message": "unknown type",
                        }
                    )
                )
    except ConnectionClosed:
        pass
    finally:
        room.members.pop(ws, None)
        if user not in room.members.values():
            broadcast(room.members, dumps({"type": "presence.leave", "user_id": user}))


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port, compression=None, max_size=65536, backlog=2048):
        print(f"raw_broadcast listening on {host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.host, args.port))
    except ImportError:
        asyncio.run(main(args.host, args.port))
