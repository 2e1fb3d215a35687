"""Every route, as an attacker sees it: no token, a bad token, the wrong room.

The table below must name every route the app has: a new route without an entry fails
``test_every_route_is_in_the_table``, so none ships without an access check.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import orjson
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from tests.client import close_code
from tests.servers import Running

PUBLIC = "public"  # no token needed (health, metrics, the web client)
SIGNED_IN = "signed-in"  # any valid token
SERVICE = "service"  # a service token only
ROOM = "room"  # a member of the room in the path (or a service token)
USER = "user"  # any valid token but a service's (tests/test_inbox.py checks the 4403)

# (method or "WS", path) -> who may use it
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/api/client-config"): PUBLIC,  # the origins a page's token_url may be on
    ("GET", "/api/openapi.json"): PUBLIC,  # the REST API's description
    ("MOUNT", "/"): PUBLIC,
    ("MOUNT", "/sdk"): PUBLIC,  # the JavaScript SDK the pages import
    ("POST", "/api/rooms"): SERVICE,
    ("GET", "/api/rooms"): SIGNED_IN,
    ("GET", "/api/rooms/{room_id}"): ROOM,
    ("GET", "/api/rooms/{room_id}/messages"): ROOM,
    ("POST", "/api/rooms/{room_id}/messages"): SERVICE,  # a system message
    # Access that changes: members, the room's title and archive flag, revocations.
    ("PATCH", "/api/rooms/{room_id}"): SERVICE,
    ("PUT", "/api/rooms/{room_id}/members/{user_id}"): SERVICE,
    ("DELETE", "/api/rooms/{room_id}/members/{user_id}"): SERVICE,
    ("POST", "/api/tokens/revoke"): SERVICE,
    ("GET", "/api/webhooks/failed"): SERVICE,
    ("DELETE", "/api/rooms/{room_id}/messages/{seq}"): SERVICE,
    ("GET", "/api/rooms/{room_id}/search"): ROOM,
    ("GET", "/api/search"): SIGNED_IN,
    ("GET", "/api/rooms/{room_id}/digest"): ROOM,  # what the others did since a seq
    ("POST", "/api/roadmaps"): SERVICE,
    ("GET", "/api/roadmaps"): SIGNED_IN,
    ("POST", "/api/rooms/{room_id}/checklist"): ROOM,
    ("GET", "/api/rooms/{room_id}/checklist"): ROOM,
    ("GET", "/api/rooms/{room_id}/checklist/history"): ROOM,
    ("GET", "/api/rooms/{room_id}/notes"): ROOM,
    ("WS", "/rooms/{room_id}/ws"): ROOM,
    ("WS", "/rooms/{room_id}/notes"): ROOM,
    ("WS", "/inbox/ws"): USER,  # every room of the token's user
    # The community feed: any signed-in member reads, comments, reacts and follows; only a
    # thread's owner posts in it or deletes its posts (tests/test_feed.py checks those).
    ("POST", "/api/communities"): SERVICE,
    ("GET", "/api/communities"): SIGNED_IN,
    ("POST", "/api/threads"): SIGNED_IN,
    ("GET", "/api/threads"): SIGNED_IN,
    ("GET", "/api/threads/{thread_id}"): SIGNED_IN,
    ("POST", "/api/threads/{thread_id}/posts"): SIGNED_IN,
    ("GET", "/api/posts/{post_id}"): SIGNED_IN,
    ("DELETE", "/api/posts/{post_id}"): SIGNED_IN,
    ("POST", "/api/posts/{post_id}/comments"): SIGNED_IN,
    ("DELETE", "/api/posts/{post_id}/comments/{comment_id}"): SIGNED_IN,
    ("PUT", "/api/posts/{post_id}/reactions/{kind}"): SIGNED_IN,
    ("DELETE", "/api/posts/{post_id}/reactions/{kind}"): SIGNED_IN,
    ("GET", "/api/follows"): SIGNED_IN,
    ("PUT", "/api/follows/{kind}/{target_id}"): SIGNED_IN,
    ("DELETE", "/api/follows/{kind}/{target_id}"): SIGNED_IN,
    ("GET", "/api/feed"): SIGNED_IN,
    ("POST", "/api/rooms/{room_id}/checklist/{item_id}/share"): ROOM,  # the room's mentee
    ("WS", "/feed/ws"): SIGNED_IN,
    ("GET", "/feed/stream"): SIGNED_IN,
}


def app_routes(server: Running) -> set[tuple[str, str]]:
    assert server.server is not None
    app: Any = server.server.config.app
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            found.add(("WS", route.path))
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
        elif isinstance(route, Mount):
            found.add(("MOUNT", route.path or "/"))
    return found


def test_every_route_is_in_the_table(server: Running) -> None:
    missing = app_routes(server) - set(ROUTES)
    assert not missing, f"routes with no access rule in this test's table: {sorted(missing)}"


def bad_tokens(server: Running) -> dict[str, str]:
    secret = server.settings.secret
    now = time.time()
    claims = {"sub": "ana", "name": "Ana", "exp": now + 60}
    return {
        "none": _alg_none(claims),
        "other-key": jwt.encode(claims, "k" * 40, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": now - 10}, secret, algorithm="HS256"),
        "not-yet-valid": jwt.encode({**claims, "nbf": now + 600}, secret, algorithm="HS256"),
        "no-sub": jwt.encode({"name": "Ana", "exp": now + 60}, secret, algorithm="HS256"),
        "oversized": jwt.encode({**claims, "pad": "x" * 5000}, secret, algorithm="HS256"),
        "garbage": "not.a.token",
    }


def _alg_none(claims: dict[str, Any]) -> str:
    import base64
    import json

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _path(template: str, room_id: str) -> str:
    return template.replace("{room_id}", room_id)


async def test_bad_tokens_are_refused_everywhere(server: Running, room: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for (method, template), rule in ROUTES.items():
            if rule == PUBLIC:
                continue
            path = _path(template, room["id"])
            for name, token in bad_tokens(server).items():
                if method == "WS":
                    code = await close_code(server.ws, f"{path}?token={token}")
                    assert code == 4401, (path, name, code)
                else:
                    resp = await http.request(
                        method, path, headers={"authorization": f"Bearer {token}"}, json={}
                    )
                    assert resp.status_code == 401, (method, path, name, resp.status_code)


async def test_a_member_of_room_a_gets_nothing_of_room_b(
    server: Running, room: dict[str, Any]
) -> None:
    from tests.client import create_room

    other = await create_room(server.url, server.service(), [("cy", "Cy", "mentor")])
    ana = "Bearer " + server.token("ana", "Ana")  # a member of `room`, not of `other`
    async with httpx.AsyncClient(base_url=server.url) as http:
        for (method, template), rule in ROUTES.items():
            path = _path(template, other["id"])
            if rule == ROOM:
                if method == "WS":
                    assert (
                        await close_code(server.ws, f"{path}?token={server.token('ana')}") == 4403
                    )
                else:
                    resp = await http.request(
                        method, path, headers={"authorization": ana}, json={"roadmap_id": "x"}
                    )
                    assert resp.status_code == 403, (method, path, resp.status_code)
                    assert "Cy" not in resp.text
            elif rule == SERVICE:
                resp = await http.request(method, path, headers={"authorization": ana}, json={})
                assert resp.status_code == 403, (method, path)


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://127.0.0.1.evil.example"]
)
async def test_foreign_origins_are_refused_on_every_socket(
    server: Running, room: dict[str, Any], origin: str
) -> None:
    """HTTP 403 at the handshake on every socket route (counted as a handshake refusal);
    the same socket without an Origin (not a browser) is admitted."""
    import websockets

    sockets = [template for (method, template) in ROUTES if method == "WS"]
    assert sockets  # the table names the socket routes
    for template in sockets:
        url = f"{server.ws}{_path(template, room['id'])}?token={server.token('ana')}"
        if template == "/feed/ws":
            url += "&community=none"  # a query the handshake never reads
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, origin=origin)  # type: ignore[arg-type]
        assert info.value.response.status_code == 403, template
        async with websockets.connect(url) as ws:  # no Origin: past the handshake
            assert ws.response is not None and ws.response.status_code == 101
    assert server.state is not None
    counters = server.state.metrics.counters
    assert counters[("menteo_sockets_refused_total", "handshake")] == len(sockets)


async def test_a_token_of_4096_bytes_is_read_and_one_more_refused(
    server: Running, room: dict[str, Any]
) -> None:
    """The token cap (4096 bytes, checked before decoding) on both sides, on a socket and
    on REST."""

    def token_of(size: int) -> str:
        claims = {"sub": "ana", "name": "Ana", "exp": time.time() + 60}
        for pad in range(4000):
            token = jwt.encode(
                claims | {"pad": "x" * pad}, server.settings.secret, algorithm="HS256"
            )
            if len(token) == size:
                return token
        raise AssertionError(f"no token of {size} bytes")

    async with httpx.AsyncClient(base_url=server.url) as http:
        for size, status, code in ((4096, 200, None), (4097, 401, 4401)):
            token = token_of(size)
            resp = await http.get("/api/rooms", headers={"authorization": f"Bearer {token}"})
            assert resp.status_code == status, size
            path = f"/rooms/{room['id']}/ws?token={token}"
            if code is not None:
                assert await close_code(server.ws, path) == code
                continue
            import websockets

            async with websockets.connect(server.ws + path) as ws:
                welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert welcome["type"] == "welcome" and welcome["you"]["user_id"] == "ana"
