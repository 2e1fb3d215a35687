"""pycrdt-websocket's server (``WebsocketServer`` behind its ``ASGIServer``), in memory, one
document per URL path: the Python notes reference of bench/notes_compare.py.

    python bench/reference/pycrdt_ws_server.py --port 8770

Served like ours: Uvicorn, ``ws="websockets-sansio"``, uvloop, no permessage-deflate.
"""

from __future__ import annotations

import argparse
from logging import Logger

import uvicorn
import uvloop
from pycrdt.websocket import ASGIServer, WebsocketServer


def handled(exc: Exception, log: Logger) -> bool:
    log.debug("room task: %r", exc)
    return True


async def main(host: str, port: int) -> None:
    # A client that leaves while its room broadcasts raises ClientDisconnected in the room's
    # task; unhandled, it stops the whole server (every room), so it is counted as handled.
    websocket_server = WebsocketServer(auto_clean_rooms=False, exception_handler=handled)
    async with websocket_server:
        config = uvicorn.Config(
            ASGIServer(websocket_server),
            host=host,
            port=port,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            log_level="warning",
            lifespan="off",
            backlog=2048,
            # Its room tasks outlive their sockets: without a deadline SIGTERM waits forever.
            timeout_graceful_shutdown=2,
        )
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8770)
    args = p.parse_args()
    uvloop.run(main(args.host, args.port))
