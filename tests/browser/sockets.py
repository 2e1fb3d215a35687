"""The pages' sockets as the browser tests see them: the query of a socket's URL, the
subprotocols (and so the token) each socket offered (``OfferedSockets``), and a server that
can be taken away (``SocketGate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from playwright.async_api import Page, WebSocketRoute

TOKEN_PROTOCOL = "menteo.token."  # clients/js/src/transport.js tokenProtocol, docs/protocol.md

# Runs before the page's own scripts (add_init_script), in every document the page loads:
# each socket the page constructs is kept as [its URL, the subprotocols it offered]. The
# browser does not show the offered protocols to Playwright (its WebSocket has only the URL),
# so they are read where the page hands them over.
RECORD_SOCKETS = """
(() => {
    const opened = [];
    Object.defineProperty(window, "__menteoSockets", { value: opened });
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
        constructor(...args) {
            super(...args);
            const offered = args[1] === undefined ? [] : [].concat(args[1]);
            opened.push([this.url, offered.map(String)]);
        }
    };
})();
"""


INBOX_PATH = "/inbox/ws"  # the room list's socket (web/js/rooms.js), beside the room's


def path_ends(url: str, path_end: str) -> bool:
    """Whether a socket's URL path ends with ``path_end``; the room list's inbox socket
    (``/inbox/ws``) only when asked for by that name, so that ``"/ws"`` means the room's."""
    path = urlsplit(url).path
    if path.endswith(INBOX_PATH) and not path_end.endswith(INBOX_PATH):
        return False
    return path.endswith(path_end)


@dataclass(frozen=True)
class Offered:
    """One socket as the page opened it: its URL and the subprotocols it offered."""

    url: str
    protocols: list[str]

    @property
    def token(self) -> str:
        """The token offered as ``menteo.token.<TOKEN>``; a failure if there was none."""
        tokens = [p[len(TOKEN_PROTOCOL) :] for p in self.protocols if p.startswith(TOKEN_PROTOCOL)]
        assert len(tokens) == 1, f"{self.url} offered {self.protocols}, not one token"
        return tokens[0]


class OfferedSockets:
    """Every socket a page's current document opened, in order, with what it offered; made by
    ``record``, before the page loads (the list starts again with each document)."""

    def __init__(self, page: Page) -> None:
        self.page = page

    @classmethod
    async def record(cls, page: Page) -> OfferedSockets:
        await page.add_init_script(RECORD_SOCKETS)
        return cls(page)

    async def opened(self, path_end: str = "") -> list[Offered]:
        """The sockets whose URL path ends with ``path_end``, in the order they were opened."""
        rows: list[Any] = await self.page.evaluate("window.__menteoSockets || []")
        offered = [Offered(str(url), [str(p) for p in protocols]) for url, protocols in rows]
        return [o for o in offered if path_ends(o.url, path_end)]

    async def tokens(self, path_end: str = "") -> list[str]:
        """The token each of those sockets offered, in order."""
        return [o.token for o in await self.opened(path_end)]


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
