"""Pages that outlive their tokens (web/js/token.js): opened with ``token_url``, the room and
feed pages fetch fresh tokens before theirs expire and hand them to their sockets
(``auth.refresh``), the notes socket reconnects with each one; a token URL on a site the
server does not allow is refused with a message, before anything is fetched; and a restarted
``make run`` (``serve --demo`` again on the same SQLite file, no MENTEO_SECRET) keeps every
open page live.

Tokens last 90 s and the server warns 85 s ahead (``MENTEO_AUTH_EXPIRING_BEFORE=85``), so a
refresh comes about every 5 s. Every wait is on an event (a frame, a socket, a page state)
with a timeout: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import jwt
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from menteo_testkit.ports import free_port
from menteo_testkit.waits import wait_until
from realtime import demo
from realtime.api import demo as demo_api
from realtime.api.demo import DemoSite
from realtime.auth import issue_token
from tests.backends import make_backend
from tests.browser.roompage import NewPage, RoomPage
from tests.browser.sockets import OfferedSockets, path_ends, query
from tests.client import create_room
from tests.feed_client import FeedApi
from tests.servers import Running, make_settings, run_server
from tests.test_demo import run_demo

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Page, WebSocket

pytestmark = pytest.mark.browser

TTL = 90  # seconds each token lasts
WARN = {"auth_expiring_before": 85}  # ... and auth.expiring comes 5 s into its life
REFRESH_TIMEOUT = 20.0  # seconds to wait for one refresh (due after about 5)
EXPIRIES_TIMEOUT = 40.0  # seconds for two 4-second tokens to expire and be replaced
RESTART_TIMEOUT_MS = 30_000  # a page's backoff while the server was down, then its reconnect


class Sockets:
    """Every socket a page opens (its URL and JSON frames both ways, and as ``offered`` the
    token each offered: it is not in the URL), and a wait on them."""

    def __init__(self, page: Page, offered: OfferedSockets) -> None:
        self.opened: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
        self.offered = offered
        self.changed = asyncio.Event()
        page.on("websocket", self._opened)

    @classmethod
    async def watch(cls, page: Page) -> Sockets:
        """Watching ``page`` from its next load on."""
        return cls(page, await OfferedSockets.record(page))

    def _opened(self, ws: WebSocket) -> None:
        sent: list[dict[str, Any]] = []
        received: list[dict[str, Any]] = []
        self.opened.append((ws.url, sent, received))
        ws.on("framesent", lambda payload: self._frame(sent, payload))
        ws.on("framereceived", lambda payload: self._frame(received, payload))
        self.changed.set()

    def _frame(self, into: list[dict[str, Any]], payload: str | bytes) -> None:
        if isinstance(payload, str):  # the notes socket's frames are binary: not ours here
            with contextlib.suppress(orjson.JSONDecodeError):
                into.append(orjson.loads(payload))
        self.changed.set()

    def urls(self, path_end: str) -> list[str]:
        return [url for url, _, _ in self.opened if path_ends(url, path_end)]

    def frames(self, path_end: str, kind: str, *, sent: bool = False) -> list[dict[str, Any]]:
        """Frames of type ``kind`` on every socket whose path ends with ``path_end``."""
        return [
            frame
            for url, out, into in self.opened
            if path_ends(url, path_end)
            for frame in (out if sent else into)
            if frame.get("type") == kind
        ]

    def counted(self, path_end: str, kind: str, n: int) -> Callable[[], bool]:
        """True once ``n`` frames of ``kind`` have come on those sockets."""
        return lambda: len(self.frames(path_end, kind)) >= n

    async def until(
        self, what: str, done: Callable[[], bool | Awaitable[bool]], timeout: float
    ) -> None:
        """Until ``done()`` holds, looked at again on each new socket or frame."""
        await wait_until(done, what, timeout, wake=self.changed)


def claims(token: str) -> dict[str, Any]:
    result: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return result


@pytest.fixture
async def demo_server(tmp_path: Path) -> AsyncIterator[tuple[Running, DemoSite]]:
    """A server with the demo's token endpoint (as ``serve --demo`` routes it) and a room of
    the demo's two members."""
    backend = await make_backend("sqlite", tmp_path)
    site = demo.site()
    settings = make_settings(backend, **WARN)
    async with run_server(settings, extra_routes=demo_api.routes(site)) as running:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(running.url, running.service(), members, title="Ana & Ben")
        site.room_id, site.community_id = room["id"], "unused"
        yield running, site


async def test_a_room_page_with_token_url_keeps_chatting_across_two_refreshes(
    new_page: NewPage, demo_server: tuple[Running, DemoSite], notes_bundle: None
) -> None:
    server, site = demo_server
    room_id = site.room_id or ""
    ana = RoomPage(await new_page())
    ana.watch()
    sockets = await Sockets.watch(ana.page)
    # The printed link for Ana sets her cookie (its redirect is not followed here) ...
    link = demo_api.link(server.url, server.settings.secret, "ana", "room")
    assert (await ana.page.request.get(link, max_redirects=0)).status == 303
    # ... and her page takes 90-second tokens from the demo's endpoint.
    token_url = "/demo/token?" + urlencode({"as": "ana", "ttl": TTL})
    await ana.page.goto(f"{server.url}/?{urlencode({'room': room_id, 'token_url': token_url})}")
    await ana.wait_state("live")
    first = (await sockets.offered.tokens("/ws"))[0]
    assert (
        claims(first)["sub"] == "ana" and abs(claims(first)["exp"] - claims(first)["iat"] - TTL) < 1
    )  # iat in ms

    # Ben, with a plain token as before: he sees what Ana says, and her notes.
    ben = RoomPage(await new_page())
    ben.watch()
    await ben.page.goto(
        f"{server.url}/?{urlencode({'room': room_id, 'token': server.token('ben')})}"
    )
    await ben.wait_state("live")

    await ana.say("before any refresh")
    await expect(ben.message("before any refresh")).to_be_visible()
    for n in (1, 2):
        await sockets.until(
            f"refresh {n} of the room socket",
            sockets.counted("/ws", "auth.refreshed", n),
            REFRESH_TIMEOUT,
        )
        await ana.say(f"after refresh {n}")
        await expect(ana.message(f"after refresh {n}")).to_be_visible()  # acked: stored
        await expect(ben.message(f"after refresh {n}")).to_be_visible()

    # The refreshes went over the open socket: one room socket all along, new tokens each.
    assert len(ana.sockets) == 1
    assert await ana.connection.get_attribute("data-state") == "live"
    refreshes = sockets.frames("/ws", "auth.refresh", sent=True)
    tokens = [first] + [frame["token"] for frame in refreshes]
    assert len(set(tokens)) == len(tokens) >= 3
    assert {claims(t)["sub"] for t in tokens} == {"ana"}
    assert not sockets.frames("/ws", "error")

    # The notes socket came back with each new token, in order.
    async def notes_on_a_newest_token() -> bool:
        notes = await sockets.offered.tokens("/notes")
        return bool(notes) and notes[-1] in tokens[2:]

    await sockets.until(
        "the notes socket on the newest token", notes_on_a_newest_token, REFRESH_TIMEOUT
    )
    notes_tokens = await sockets.offered.tokens("/notes")
    assert len(notes_tokens) >= 3
    assert notes_tokens[:3] == tokens[:3]
    await expect(ana.notes).to_have_attribute("data-status", "synced")
    await ana.notes_editor.click()
    await ana.page.keyboard.type("Written on a renewed token")
    await ben.wait_notes_text("Written on a renewed token")


@dataclass
class Platform:
    """The platform's token endpoint on another origin: ``GET /platform/token?as=USER
    [&ttl=S]``, with CORS (credentials included) for the origins in ``pages``."""

    secret: str
    url: str = ""
    pages: list[str] = field(default_factory=list)  # origins its CORS answers allow
    asked: list[str] = field(default_factory=list)  # the Origin of every request answered
    refuse: bool = False  # answer 403, as for a signed-out user

    async def token(self, request: Request) -> JSONResponse:
        origin = request.headers.get("origin", "")
        self.asked.append(origin)
        cors = {"Vary": "Origin"}
        if origin in self.pages:
            cors |= {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
            }
        if self.refuse:
            return JSONResponse({"error": "signed out"}, 403, headers=cors)
        user_id = request.query_params["as"]
        ttl = int(request.query_params.get("ttl", TTL))
        body = {"token": issue_token(self.secret, user_id, user_id.title(), ttl=ttl)}
        return JSONResponse(body, headers=cors)


@contextlib.asynccontextmanager
async def platform(secret: str) -> AsyncIterator[Platform]:
    served = Platform(secret)
    app = Starlette(routes=[Route("/platform/token", served.token)])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:  # as run_server: uvicorn has no startup event
                if task.done():
                    task.result()
                    raise RuntimeError("the platform's server exited during startup")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        served.url = f"http://127.0.0.1:{port}/platform/token"
        yield served
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def with_platform(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Running, Platform]]:
    """A server whose pages may take tokens from the platform (MENTEO_ALLOWED_ORIGINS)."""
    backend = await make_backend("sqlite", tmp_path)
    async with platform(make_settings(backend).secret) as served:
        origin = f"http://{urlsplit(served.url).netloc}"
        config = make_settings(backend, allowed_origins=(origin,), **settings)
        async with run_server(config) as server:
            served.pages.append(server.url)
            yield server, served


async def test_a_feed_page_renews_from_an_allowed_origin_and_refuses_others(
    new_page: NewPage, tmp_path: Path
) -> None:
    async with with_platform(tmp_path, **WARN) as (server, served):
        token_url, asked = served.url, served.asked
        service = FeedApi(server.url, server.token("backend", "Backend", role="service"))
        community = await service.community("Learning in public")
        page = await new_page()
        sockets = await Sockets.watch(page)
        feed_query = {"community": community, "token_url": token_url + "?as=ben"}
        await page.goto(f"{server.url}/feed.html?{urlencode(feed_query)}")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        for n in (1, 2):
            await sockets.until(
                f"refresh {n} of the feed socket",
                sockets.counted("/feed/ws", "auth.refreshed", n),
                REFRESH_TIMEOUT,
            )
        assert len(sockets.urls("/feed/ws")) == 1  # renewed in place
        assert len(asked) >= 3 and set(asked) == {server.url}  # a CORS request each time

        # Still live: Ana's new post shows, and Ben's reaction goes through with his new token.
        ana = FeedApi(server.url, server.token("ana", "Ana"))
        thread = await ana.thread(community, "Notes from a mentor")
        await ana.post(thread, "Posted after two refreshes")
        post = page.locator("#feed-list > li.post").filter(has_text="Posted after two refreshes")
        await expect(post).to_be_visible()
        await post.locator('.reaction[data-kind="celebrate"]').click()
        await expect(post.locator('.reaction[data-kind="celebrate"] .count')).to_have_text("1")

        # A token URL on an origin the server does not allow: a message, and nothing fetched.
        refused = await new_page()
        requested: list[str] = []
        refused.on("request", lambda request: requested.append(request.url))
        before = len(asked)
        evil = "http://127.0.0.1:9/platform/token?as=ben"
        await refused.goto(f"{server.url}/?{urlencode({'room': 'r1', 'token_url': evil})}")
        await expect(refused.locator("#fatal")).to_contain_text("does not allow")
        await expect(refused.locator("#connection")).to_have_attribute("data-state", "stopped")
        script = "javascript:alert(1)"
        await refused.goto(f"{server.url}/feed.html?{urlencode({'token_url': script})}")
        await expect(refused.locator("#fatal")).to_contain_text("must be an http(s) URL")
        assert not [url for url in requested if url.startswith("http://127.0.0.1:9/")]
        assert not [url for url in requested if "/ws" in url or "/api/feed" in url]
        assert len(asked) == before


async def test_sockets_closed_at_expiry_come_back_on_a_fresh_token_until_refused(
    new_page: NewPage, tmp_path: Path, notes_bundle: None
) -> None:
    """Tokens of 4 s and no warning ahead (``MENTEO_AUTH_EXPIRING_BEFORE=0``): the room and
    notes sockets are closed 4401 at every expiry, and the page reconnects each on a fresh
    token; when the token URL says no, the page stops and says why."""
    async with with_platform(tmp_path, auth_expiring_before=0) as (server, served):
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        ana = RoomPage(await new_page())
        ana.watch()
        sockets = await Sockets.watch(ana.page)
        token_url = served.url + "?" + urlencode({"as": "ana", "ttl": 4})
        await ana.page.goto(
            f"{server.url}/?{urlencode({'room': room['id'], 'token_url': token_url})}"
        )
        await ana.wait_state("live")
        await ana.say("on the first token")
        await expect(ana.message("on the first token")).to_be_visible()

        def reconnected(path_end: str, n: int) -> Callable[[], Awaitable[bool]]:
            """``n`` sockets there, each on a token of its own (renewed after a 4401)."""

            async def done() -> bool:
                return len(set(await sockets.offered.tokens(path_end))) >= n

            return done

        # Two expiries, each with a fetch and a reconnect: about 10 s.
        await sockets.until("a third room socket", reconnected("/ws", 3), EXPIRIES_TIMEOUT)
        await sockets.until("a third notes socket", reconnected("/notes", 3), EXPIRIES_TIMEOUT)
        await ana.wait_state("live")
        await ana.say("after two expiries")
        await expect(ana.message("after two expiries")).to_be_visible()
        await expect(ana.notes).to_have_attribute("data-status", "synced")
        assert not await ana.page.locator("#fatal").is_visible()

        # Signed out on the platform: at the next expiry the page stops, and says so.
        served.refuse = True
        fatal = ana.page.locator("#fatal")
        await expect(fatal).to_contain_text("could not be renewed", timeout=EXPIRIES_TIMEOUT * 1000)
        await expect(ana.connection).to_have_attribute("data-state", "stopped")


async def test_a_restarted_make_run_keeps_the_open_pages_live(
    new_page: NewPage, tmp_path: Path
) -> None:
    """``serve --demo`` with no MENTEO_SECRET, stopped and started again on its SQLite file
    and port: a page from its printed link (token_url) and a page with a plain token both
    come back live, chat, and the first still renews its token."""
    port = free_port()
    database = tmp_path / "menteo.db"
    env = {"MENTEO_AUTH_EXPIRING_BEFORE": "85"}
    async with run_demo(database, port, **env) as first:
        ana = RoomPage(await new_page())
        ana.watch()
        sockets = await Sockets.watch(ana.page)
        await ana.page.goto(first.links["Ana (mentor), room"])  # sets the cookie, redirects
        await ana.wait_state("live")
        room_id = query(ana.page.url)["room"]
        assert query(ana.page.url)["token_url"] == "/demo/token?as=ana"
        short = {
            "room": room_id,
            "token_url": "/demo/token?" + urlencode({"as": "ana", "ttl": TTL}),
        }
        await ana.page.goto(f"{first.base_url}/?{urlencode(short)}")
        await ana.wait_state("live")

        ben = RoomPage(await new_page())
        ben.watch()
        link = first.links["Ben (mentee), room"]
        assert (await ben.page.request.get(link, max_redirects=0)).status == 303
        minted = await ben.page.request.get(f"{first.base_url}/demo/token?as=ben")
        plain = {"room": room_id, "token": (await minted.json())["token"]}
        await ben.page.goto(f"{first.base_url}/?{urlencode(plain)}")  # no token_url: as before
        await ben.wait_state("live")
        await ana.say("before the restart")
        await expect(ben.message("before the restart")).to_be_visible()

    for page in (ana, ben):  # the server is gone: both wait to reconnect
        await expect(page.connection).not_to_have_attribute("data-state", "live")

    async with run_demo(database, port, **env) as second:
        assert second.base_url == first.base_url
        began = len(sockets.opened)  # the sockets from here on reach the restarted server
        for page in (ana, ben):
            await expect(page.connection).to_have_attribute(
                "data-state", "live", timeout=RESTART_TIMEOUT_MS
            )
        await ana.say("after the restart")
        await expect(ben.message("after the restart")).to_be_visible()
        await ben.say("Ben after the restart")
        await expect(ana.message("Ben after the restart")).to_be_visible()
        # Ana's page still renews its token on the restarted server (the demo's cookie holds).
        refreshed = len(sockets.frames("/ws", "auth.refreshed"))
        await sockets.until(
            "a refresh after the restart",
            lambda: len(sockets.frames("/ws", "auth.refreshed")) > refreshed,
            REFRESH_TIMEOUT,
        )
        # It came back without a refusal: every room socket opened on the restarted server
        # was welcomed (a 4401 closes one before its welcome). Its token may be the one it
        # had or one renewed meanwhile (the room list's inbox socket shares the page's
        # tokens, and may be warned and renew first).
        rooms = [(url, into) for url, _, into in sockets.opened if path_ends(url, "/ws")]
        welcomed = [any(f.get("type") == "welcome" for f in into) for _, into in rooms]
        assert welcomed[-1]
        assert all(
            any(f.get("type") == "welcome" for f in into)
            for url, _, into in sockets.opened[began:]
            if path_ends(url, "/ws")
        )
        assert await ben.connection.get_attribute("data-state") == "live"
        assert not await ana.page.locator("#fatal").is_visible()
        assert not await ben.page.locator("#fatal").is_visible()
