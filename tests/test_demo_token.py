"""The demo's token endpoint (realtime/api/demo.py): absent without ``serve --demo``; with
it, a printed link sets a cookie for one demo member, and ``/demo/token`` mints member tokens
for that member only, for pages of this origin only. Never a service token, never another
user."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from realtime import demo
from realtime.api import demo as demo_api
from realtime.auth import verify_token
from tests.backends import make_backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server


@pytest.fixture
async def site() -> demo_api.DemoSite:
    return demo.site()


@pytest.fixture
async def demo_server(tmp_path: Path, site: demo_api.DemoSite) -> AsyncIterator[Running]:
    backend = await make_backend("sqlite", tmp_path)
    async with run_server(make_settings(backend), extra_routes=demo_api.routes(site)) as running:
        room = await create_room(
            running.url, running.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        site.room_id, site.community_id = room["id"], "c-demo"
        yield running


def link_path(server: Running, user_id: str, to: str = "room") -> str:
    url = demo_api.link(server.url, server.settings.secret, user_id, to)
    return url.removeprefix(server.url)


async def open_link(http: httpx.AsyncClient, path: str) -> str:
    """Open a printed link as a browser would; the cookie it sets (``name=value``), which
    each request below sends explicitly (the client's own jar is emptied)."""
    resp = await http.get(path)
    http.cookies.clear()
    assert resp.status_code == 303, resp.text
    set_cookie = resp.headers["set-cookie"]
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/demo/"} <= attributes, set_cookie
    return set_cookie.split(";")[0]


async def test_no_demo_no_token_endpoint(tmp_path: Path) -> None:
    backend = await make_backend("sqlite", tmp_path)
    async with (
        run_server(make_settings(backend)) as server,
        httpx.AsyncClient(base_url=server.url, follow_redirects=False) as http,
    ):
        site = demo.site()
        site.room_id, site.community_id = "r", "c"
        # A link as --demo would print it, with a valid key: nothing answers it here.
        assert (await http.get(link_path(server, "ana"))).status_code == 404
        resp = await http.get("/demo/token?as=ana", headers={"cookie": "menteo_demo_ana=1.x"})
        assert resp.status_code == 404
        assert "token" not in resp.text


async def test_a_printed_link_signs_in_its_member_and_no_one_else(
    demo_server: Running, site: demo_api.DemoSite
) -> None:
    async with httpx.AsyncClient(base_url=demo_server.url, follow_redirects=False) as http:
        resp = await http.get(link_path(demo_server, "ana"))
        http.cookies.clear()
        assert resp.status_code == 303
        target = urlsplit(resp.headers["location"])
        assert target.path == "/"
        query = parse_qs(target.query)
        # The page gets the room and the token endpoint, never a token in its URL.
        assert query == {"room": [site.room_id], "token_url": ["/demo/token?as=ana"]}
        assert resp.headers["cache-control"] == "no-store"
        feed = await http.get(link_path(demo_server, "ben", "feed"))
        http.cookies.clear()
        assert parse_qs(urlsplit(feed.headers["location"]).query) == {
            "community": ["c-demo"],
            "token_url": ["/demo/token?as=ben"],
        }

        ana_cookie = await open_link(http, link_path(demo_server, "ana"))
        minted = await http.get("/demo/token?as=ana", headers={"cookie": ana_cookie})
        assert minted.status_code == 200, minted.text
        assert minted.headers["cache-control"] == "no-store"
        token = minted.json()["token"]
        principal = verify_token(demo_server.settings.secret, token)
        assert (principal.user_id, principal.name, principal.is_service) == ("ana", "Ana", False)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert "role" not in claims
        assert claims["exp"] - claims["iat"] == demo_api.TOKEN_TTL
        # A shorter life, within bounds (a page shows its renewals sooner).
        short = await http.get("/demo/token?as=ana&ttl=90", headers={"cookie": ana_cookie})
        claims = jwt.decode(short.json()["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 90
        for ttl in ("10", "86400", "x"):
            bad = await http.get(f"/demo/token?as=ana&ttl={ttl}", headers={"cookie": ana_cookie})
            assert bad.status_code == 400, ttl
        # The token opens Ana's room.
        ana = await RoomClient.connect(demo_server.ws, site.room_id or "", token)
        assert ana.welcome["you"]["user_id"] == "ana"
        await ana.close()

        # Ana's cookie is Ana's: not Ben's, even renamed; nobody but the demo's members.
        value = ana_cookie.split("=", 1)[1]
        for user_id, cookie in [
            ("ben", ana_cookie),
            ("ben", f"menteo_demo_ben={value}"),
            ("ana", None),
            ("ana", "menteo_demo_ana=" + str(int(time.time()) + 60) + ".00"),
        ]:
            headers = {"cookie": cookie} if cookie else {}
            refused = await http.get(f"/demo/token?as={user_id}", headers=headers)
            assert refused.status_code == 401, (user_id, cookie)
            assert "token" not in refused.json()
        for other in ("backend", "menteo-demo", "mallory", ""):
            cookie = f"menteo_demo_{other}={value}; {ana_cookie}"
            refused = await http.get(f"/demo/token?as={other}", headers={"cookie": cookie})
            assert refused.status_code == 403, other
            assert refused.json()["error"]["code"] == "forbidden"


async def test_only_pages_of_this_origin_get_tokens(demo_server: Running) -> None:
    async with httpx.AsyncClient(base_url=demo_server.url, follow_redirects=False) as http:
        cookie = await open_link(http, link_path(demo_server, "ben"))
        host = urlsplit(demo_server.url).netloc
        allowed = [
            {"sec-fetch-site": "same-origin"},
            {"sec-fetch-site": "none"},  # typed into the address bar
            {"origin": f"http://{host}"},
        ]
        refused = [
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},  # another port of the same host
            {"origin": "http://127.0.0.1:1"},
            {"origin": "https://evil.example"},
        ]
        for headers in allowed:
            resp = await http.get("/demo/token?as=ben", headers={"cookie": cookie, **headers})
            assert resp.status_code == 200, headers
        for headers in refused:
            resp = await http.get("/demo/token?as=ben", headers={"cookie": cookie, **headers})
            assert resp.status_code == 403, headers


async def test_links_with_a_wrong_key_or_past_their_time_are_refused(demo_server: Running) -> None:
    secret = demo_server.settings.secret
    async with httpx.AsyncClient(base_url=demo_server.url, follow_redirects=False) as http:
        good = link_path(demo_server, "ana")
        query = parse_qs(urlsplit(good).query)
        forged = good.replace(query["key"][0], "0" * 64)
        other_user = good.replace("as=ana", "as=ben")  # Ana's key does not open Ben's page
        old = demo_api.link("", secret, "ana", "room", now=time.time() - demo_api.LINK_TTL - 5)
        for path in (forged, other_user, old):
            resp = await http.get(path)
            assert resp.status_code == 403, path
            assert "set-cookie" not in resp.headers
        outsider = good.replace("as=ana", "as=mallory")
        assert (await http.get(outsider)).status_code == 403
        assert (await http.get(good.replace("to=room", "to=admin"))).status_code == 404


async def test_links_wait_for_the_demo_to_be_seeded(tmp_path: Path) -> None:
    backend = await make_backend("sqlite", tmp_path)
    site = demo.site()  # not seeded: no room yet
    async with (
        run_server(make_settings(backend), extra_routes=demo_api.routes(site)) as server,
        httpx.AsyncClient(base_url=server.url, follow_redirects=False) as http,
    ):
        resp = await http.get(link_path(server, "ana"))
        assert resp.status_code == 503
        assert "set-cookie" not in resp.headers
