"""Follows are checked like every other write: ids are one line of text on every backend,
only what exists can be followed, a user follows at most MENTEO_MAX_FOLLOWS things, and a
deleted post takes its comments' words with it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from realtime.feed.tables import COMMENT_T, EVENT_T, FOLLOW_T, POST_T
from tests.backends import Backend
from tests.client import create_room
from tests.feed_client import FeedApi
from tests.servers import Running, make_settings, run_server

# Percent-encoded in the path: NUL, newline, ESC, DEL, a C1 control (NEL).
BAD_IDS = ["a%00b", "a%0Ab", "%1B[31m", "x%7F", "a%C2%85b"]


async def _setup(server: Running) -> dict[str, Any]:
    await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
    community = await FeedApi(server.url, server.token("backend", role="service")).community()
    cy = FeedApi(server.url, server.token("cy"))
    thread = await cy.thread(community)
    return {"community": community, "thread": thread, "cy": cy}


async def test_follow_ids_with_nul_or_control_characters_are_refused(server: Running) -> None:
    """400 on every backend (SQLite stored ``a\\x00b``; PostgreSQL answered 500); a NUL is
    refused before any route, as in every path (404)."""
    dee = FeedApi(server.url, server.token("dee"))
    for kind in ("users", "threads", "communities"):
        for bad in BAD_IDS:
            for method in ("PUT", "DELETE"):
                resp = await dee.call(method, f"/api/follows/{kind}/{bad}")
                if "%00" in bad:  # a NUL in any path: 404 before the route (protocol.md)
                    assert resp.status_code == 404, (kind, bad, method, resp.text)
                    assert resp.json()["error"]["code"] == "not_found"
                    continue
                assert resp.status_code == 400, (kind, bad, method, resp.text)
                error = resp.json()["error"]
                assert error["code"] == "invalid" and "control character" in error["message"]
    # Invalid UTF-8 in a path is replaced (U+FFFD) before the app sees it: never a 500.
    assert (await dee.call("PUT", "/api/follows/users/%ED%A0%80")).status_code == 404
    assert await dee.ok("GET", "/api/follows") == {"communities": [], "threads": [], "users": []}
    # A deleted post's id is checked the same way (a 404, never a 500 on PostgreSQL).
    assert (await dee.call("DELETE", "/api/posts/x%00y")).status_code == 404


async def test_only_users_the_data_knows_can_be_followed(server: Running) -> None:
    """A user exists once the data names them: a room's member or a thread's owner."""
    known = await _setup(server)
    dee = FeedApi(server.url, server.token("dee"))
    for nobody in ("nobody", "ana2", "Cy"):
        resp = await dee.call("PUT", f"/api/follows/users/{nobody}")
        assert resp.status_code == 404, (nobody, resp.text)
        assert resp.json()["error"]["code"] == "not_found"
        assert "no such user" in resp.json()["error"]["message"]
    assert (await dee.follow("users", "ana"))["changed"] is True  # a room's member
    assert (await dee.follow("users", "cy"))["changed"] is True  # a thread's owner
    assert (await dee.follow("threads", known["thread"]))["changed"] is True
    assert (await dee.follow("communities", known["community"]))["changed"] is True
    # Unfollowing what does not exist is harmless: nothing changes.
    assert (await dee.follow("users", "nobody", on=False))["changed"] is False
    follows = await dee.ok("GET", "/api/follows")
    assert follows["users"] == ["ana", "cy"]


async def test_follows_are_capped_per_user(backend: Backend) -> None:
    async with run_server(make_settings(backend, max_follows=3)) as server:
        known = await _setup(server)
        dee = FeedApi(server.url, server.token("dee"))
        await dee.follow("users", "ana")
        await dee.follow("users", "cy")
        await dee.follow("threads", known["thread"])
        resp = await dee.call("PUT", f"/api/follows/communities/{known['community']}")
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"]["code"] == "too_many_follows"
        assert "at most 3" in resp.json()["error"]["message"]
        # Following again what one follows already stays fine (idempotent) at the cap.
        assert (await dee.follow("users", "ana"))["changed"] is False
        await dee.follow("users", "ana", on=False)
        assert (await dee.follow("communities", known["community"]))["changed"] is True
        follows = await dee.ok("GET", "/api/follows")
        assert sum(len(v) for v in follows.values()) == 3
        # The cap is per user: another user follows freely.
        assert (await FeedApi(server.url, server.token("eve")).follow("users", "cy"))["changed"]
        assert server.state is not None
        async with server.state.db.read() as db:
            rows = list(await db.execute(select(FOLLOW_T.c.user_id)))
        assert sorted(r.user_id for r in rows) == ["dee", "dee", "dee", "eve"]


async def test_deleting_a_post_erases_its_comments_rows_and_events(server: Running) -> None:
    known = await _setup(server)
    cy: FeedApi = known["cy"]
    post = await cy.post(known["thread"], "post body CANARY-POST-1")
    keep = await cy.post(known["thread"], "another post")
    dee = FeedApi(server.url, server.token("dee"))
    await dee.comment(post["id"], "comment CANARY-COMMENT-1")
    await cy.comment(post["id"], "comment CANARY-COMMENT-2")
    await dee.comment(keep["id"], "a comment that stays")
    await cy.delete(post["id"])
    assert server.state is not None
    async with server.state.db.read() as db:
        comments = list(await db.execute(select(COMMENT_T.c.post_id, COMMENT_T.c.body)))
        events = [r.data for r in await db.execute(select(EVENT_T.c.data))]
        posts = list(await db.execute(select(POST_T.c.id, POST_T.c.body)))
    assert [(c.post_id, c.body) for c in comments] == [(keep["id"], "a comment that stays")]
    assert not [data for data in events if "CANARY" in data], events
    assert any("a comment that stays" in data for data in events)
    assert dict((p.id, p.body) for p in posts)[post["id"]] == ""
    # The deleted post and its comments are gone from REST; the other post keeps its own.
    assert (await dee.call("GET", f"/api/posts/{post['id']}")).status_code == 404
    shown = await dee.ok("GET", f"/api/posts/{keep['id']}")
    assert [c["body"] for c in shown["comments"]] == ["a comment that stays"]


async def test_deleting_a_comment_erases_its_row_and_event(server: Running) -> None:
    known = await _setup(server)
    cy: FeedApi = known["cy"]
    post = await cy.post(known["thread"], "a post that stays")
    dee = FeedApi(server.url, server.token("dee"))
    doomed = await dee.comment(post["id"], "comment CANARY-COMMENT-3")
    await dee.comment(post["id"], "a comment that stays")
    await dee.ok("DELETE", f"/api/posts/{post['id']}/comments/{doomed['id']}")
    assert server.state is not None
    async with server.state.db.read() as db:
        comments = list(await db.execute(select(COMMENT_T.c.body)))
        events = [r.data for r in await db.execute(select(EVENT_T.c.data))]
    assert [c.body for c in comments] == ["a comment that stays"]
    assert not [data for data in events if "CANARY" in data], events
    assert any(doomed["id"] in data and '"deleted":true' in data for data in events)
