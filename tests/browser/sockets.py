"""The pages' sockets as the browser tests see them: the query of a socket's URL, and a
server that can be taken away (``SocketGate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from playwright.async_api import WebSocketRoute


def query(url: str) -> dict[str, str]:
    """The parameters of a URL's query (the first value of each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class SocketGate:
    """A ``route`` for a page's sockets (Playwright's route_web_socket): while not
    ``blocked``, a socket goes through to the server and is kept in ``sockets``; while
    ``blocked`` (the server is out of reach), it is closed at once with 1013."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.blocked = blocked
        self.sockets: list[WebSocketRoute] = []

    async def __call__(self, ws: WebSocketRoute) -> None:
        if self.blocked:
            await ws.close(code=1013, reason="try again")
        else:
            ws.connect_to_server()
            self.sockets.append(ws)

    async def restart(self) -> None:
        """The server goes away: the newest socket is closed as by a restart (1012), and the
        next ones are refused until ``blocked`` is false again."""
        self.blocked = True
        await self.sockets[-1].close(code=1012, reason="server restart")
