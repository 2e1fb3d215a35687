"""The community feed over REST: data, authorization rules, limits, paging, milestones."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi, close_all
from tests.servers import Running, make_settings, run_server

# Generous write limits: these tests are about behaviour; test_rate_limits is about limits.
OPEN_LIMITS = {
    "feed_post_rate_per_second": 1000.0,
    "feed_post_burst": 1000,
    "feed_comment_rate_per_second": 1000.0,
    "feed_comment_burst": 1000,
    "feed_reaction_rate_per_second": 1000.0,
    "feed_reaction_burst": 1000,
}


@pytest.fixture(autouse=True)
async def close_followers() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def feed_server(backend: Backend) -> AsyncIterator[Running]:
    async with run_server(make_settings(backend, **OPEN_LIMITS)) as running:
        yield running
        await close_all()  # before the server stops: an open event stream delays shutdown


def api(server: Running, user: str) -> FeedApi:
    return FeedApi(server.url, server.token(user))


def service(server: Running) -> FeedApi:
    return FeedApi(server.url, server.token("backend", "Backend", role="service"))


async def test_thread_posts_comments_and_reactions_round_trip(feed_server: Running) -> None:
    community = await service(feed_server).community("Data Engineering")
    ana, ben = api(feed_server, "ana"), api(feed_server, "ben")
    thread = await ana.thread(community, "Week by week: Rust")
    body = 'Week 6: <script>alert("x")</script> & lifetimes <b>clicked</b>'
    post = await ana.post(thread, body)
    assert post["body"] == body  # stored as text, exactly
    assert post["author"] == {"user_id": "ana", "name": "Ana"}
    assert post["thread_title"] == "Week by week: Rust" and post["community_id"] == community
    comment = await ben.comment(post["id"], "Lifetimes are a rite of passage")
    assert comment["author"]["user_id"] == "ben" and comment["cursor"] > post["cursor"]
    assert (await ben.react(post["id"], "celebrate"))["changed"] is True
    assert (await ben.react(post["id"], "celebrate"))["changed"] is False  # one per kind
    await ben.react(post["id"], "like")
    await ana.react(post["id"], "like")
    await ana.react(post["id"], "like", on=False)

    resp = await ben.call("GET", f"/api/threads/{thread}")
    assert resp.headers["content-type"] == "application/json"  # never rendered as HTML
    shown = resp.json()
    assert shown["owner"] == {"user_id": "ana", "name": "Ana"}
    assert [p["id"] for p in shown["posts"]] == [post["id"]]
    listed = shown["posts"][0]
    assert listed["body"] == body
    assert listed["reactions"] == {"like": 1, "celebrate": 1, "insightful": 0, "support": 0}
    assert listed["my_reactions"] == ["celebrate", "like"]
    assert listed["comments"] == 1

    detail = await ana.ok("GET", f"/api/posts/{post['id']}")
    assert detail["post"]["my_reactions"] == []
    assert [c["body"] for c in detail["comments"]] == ["Lifetimes are a rite of passage"]
    communities = await ben.ok("GET", "/api/communities")
    assert [c["name"] for c in communities["communities"]] == ["Data Engineering"]


async def test_no_token_is_401_everywhere(feed_server: Running) -> None:
    anon = FeedApi(feed_server.url, "not-a-token")
    for method, path in [
        ("POST", "/api/communities"),
        ("GET", "/api/communities"),
        ("POST", "/api/threads"),
        ("GET", "/api/threads/x"),
        ("POST", "/api/threads/x/posts"),
        ("GET", "/api/posts/x"),
        ("DELETE", "/api/posts/x"),
        ("POST", "/api/posts/x/comments"),
        ("PUT", "/api/posts/x/reactions/like"),
        ("PUT", "/api/follows/users/ana"),
        ("GET", "/api/follows"),
        ("GET", "/api/feed?following=1"),
        ("POST", "/api/rooms/x/checklist/y/share"),
    ]:
        resp = await anon.call(method, path, json={})
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "unauthorized"


async def test_only_the_service_creates_communities(feed_server: Running) -> None:
    resp = await api(feed_server, "ana").call("POST", "/api/communities", json={"name": "Mine"})
    assert resp.status_code == 403
    assert await service(feed_server).community("Ours")


async def test_only_the_owner_posts_in_a_thread(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana, ben = api(feed_server, "ana"), api(feed_server, "ben")
    thread = await ana.thread(community)
    resp = await ben.call("POST", f"/api/threads/{thread}/posts", json={"body": "hijack"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    resp = await service(feed_server).call(
        "POST", f"/api/threads/{thread}/posts", json={"body": "not even the backend"}
    )
    assert resp.status_code == 403
    missing = await ana.call("POST", "/api/threads/nope/posts", json={"body": "x"})
    assert missing.status_code == 404
    assert (await ana.post(thread, "mine"))["body"] == "mine"
    assert (await ana.feed(f"community={community}"))["posts"][0]["body"] == "mine"


async def test_only_the_owner_deletes_a_post(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana, ben = api(feed_server, "ana"), api(feed_server, "ben")
    thread = await ana.thread(community)
    post = await ana.post(thread, "to be deleted")
    await ben.comment(post["id"], "a commenter cannot delete the post")
    assert (await ben.call("DELETE", f"/api/posts/{post['id']}")).status_code == 403
    assert (
        await service(feed_server).call("DELETE", f"/api/posts/{post['id']}")
    ).status_code == 403
    deleted = await ana.delete(post["id"])
    assert deleted["deleted"] is True and deleted["cursor"] > post["cursor"]
    # Gone from every read, and nothing more can happen to it.
    assert (await ana.call("DELETE", f"/api/posts/{post['id']}")).status_code == 404
    assert (await ben.call("GET", f"/api/posts/{post['id']}")).status_code == 404
    assert (await ben.feed(f"community={community}"))["posts"] == []
    assert (await ben.ok("GET", f"/api/threads/{thread}"))["posts"] == []
    comment = await ben.call("POST", f"/api/posts/{post['id']}/comments", json={"body": "late"})
    assert comment.status_code == 404
    assert (await ben.call("PUT", f"/api/posts/{post['id']}/reactions/like")).status_code == 404


async def test_only_the_author_deletes_a_comment(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana, ben = api(feed_server, "ana"), api(feed_server, "ben")
    thread = await ana.thread(community)
    post = await ana.post(thread, "comments come and go")
    mine = await ben.comment(post["id"], "oops, wrong post")
    kept = await ben.comment(post["id"], "this one stays")
    path = f"/api/posts/{post['id']}/comments/{mine['id']}"
    # Not even the thread's owner or the service deletes someone else's comment.
    assert (await ana.call("DELETE", path)).status_code == 403
    assert (await service(feed_server).call("DELETE", path)).status_code == 403
    for odd in ("x" * 129, "%01", "%00", "%ED%A0%80", mine["id"] + "%0A"):
        other = f"/api/posts/{post['id']}/comments/{odd}"
        assert (await ben.call("DELETE", other)).status_code == 404, odd
    # A comment id under another post is no comment of that post.
    second = await ana.post(thread, "another post")
    wrong = f"/api/posts/{second['id']}/comments/{mine['id']}"
    assert (await ben.call("DELETE", wrong)).status_code == 404
    deleted = await ben.ok("DELETE", path)
    assert deleted == {
        "id": mine["id"],
        "post_id": post["id"],
        "deleted": True,
        "cursor": deleted["cursor"],
    }
    assert deleted["cursor"] > kept["cursor"]
    assert (await ben.call("DELETE", path)).status_code == 404  # once
    shown = await ben.ok("GET", f"/api/posts/{post['id']}")
    assert [c["id"] for c in shown["comments"]] == [kept["id"]]
    assert shown["post"]["comments"] == 1


async def test_a_users_threads_are_listed_newest_first(feed_server: Running) -> None:
    svc = service(feed_server)
    first, second = await svc.community("One"), await svc.community("Two")
    ana, ben = api(feed_server, "ana"), api(feed_server, "ben")
    older = await ana.thread(first, "Rust")
    newer = await ana.thread(first, "SQL")
    elsewhere = await ana.thread(second, "Go")
    await ben.thread(first, "Ben's own")
    mine = await ana.ok("GET", f"/api/threads?owner=me&community={first}")
    assert [t["id"] for t in mine["threads"]] == [newer, older] and mine["has_more"] is False
    assert mine["threads"][0]["owner"] == {"user_id": "ana", "name": "Ana"}
    everywhere = await ben.ok("GET", "/api/threads?owner=ana")  # anyone reads them
    assert {t["id"] for t in everywhere["threads"]} == {older, newer, elsewhere}
    paged = await ben.ok("GET", "/api/threads?owner=ana&limit=1")
    assert len(paged["threads"]) == 1 and paged["has_more"] is True
    assert (await ben.ok("GET", "/api/threads?owner=nobody"))["threads"] == []
    for bad in ("", "owner=", "owner=%01", "owner=" + "x" * 129, "owner=me&limit=0"):
        assert (await ana.call("GET", f"/api/threads?{bad}")).status_code == 400, bad
    assert (await ana.call("GET", "/api/threads?owner=me&community=%0A")).status_code == 400


async def test_anyone_signed_in_reads_comments_reacts_and_follows(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana = api(feed_server, "ana")
    thread = await ana.thread(community)
    post = await ana.post(thread, "public progress")
    for user in ("ben", "cy"):
        member = api(feed_server, user)
        assert (await member.feed(f"community={community}"))["posts"][0]["id"] == post["id"]
        assert (await member.ok("GET", f"/api/threads/{thread}"))["posts"][0]["id"] == post["id"]
        await member.comment(post["id"], f"go {user}")
        await member.react(post["id"], "support")
        await member.follow("threads", thread)
        assert (await member.ok("GET", "/api/follows"))["threads"] == [thread]
    # The backend reads too.
    assert (await service(feed_server).feed(f"community={community}"))["posts"]


async def test_input_limits(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana = api(feed_server, "ana")
    long_title = await ana.call(
        "POST", "/api/threads", json={"title": "t" * 201, "community_id": community}
    )
    assert long_title.status_code == 400
    no_community = await ana.call("POST", "/api/threads", json={"title": "t", "community_id": "x"})
    assert no_community.status_code == 404
    thread = await ana.thread(community, "t" * 200)
    too_long = await ana.call("POST", f"/api/threads/{thread}/posts", json={"body": "x" * 10_001})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "invalid"
    blank = await ana.call("POST", f"/api/threads/{thread}/posts", json={"body": "   "})
    assert blank.status_code == 400
    post = await ana.post(thread, "x" * 10_000)
    long_comment = await ana.call(
        "POST", f"/api/posts/{post['id']}/comments", json={"body": "c" * 2_001}
    )
    assert long_comment.status_code == 400
    assert (await ana.comment(post["id"], "c" * 2_000))["body"] == "c" * 2_000
    assert (await ana.call("PUT", f"/api/posts/{post['id']}/reactions/dislike")).status_code == 400
    assert (await ana.call("PUT", "/api/follows/planets/mars")).status_code == 404
    assert (await ana.call("PUT", "/api/follows/threads/nope")).status_code == 404
    assert (await ana.call("GET", "/api/feed")).status_code == 400  # neither filter
    both = await ana.call("GET", f"/api/feed?community={community}&following=1")
    assert both.status_code == 400
    assert (await ana.call("GET", "/api/feed?community=nope")).status_code == 404
    assert (await ana.call("GET", f"/api/feed?community={community}&limit=0")).status_code == 400


async def test_rate_limits_answer_429_with_retry_after(backend: Backend) -> None:
    settings = make_settings(
        backend,
        feed_post_rate_per_second=0.01,
        feed_post_burst=3,
        feed_comment_rate_per_second=0.01,
        feed_comment_burst=2,
        feed_reaction_rate_per_second=0.01,
        feed_reaction_burst=2,
    )
    async with run_server(settings) as server:
        community = await service(server).community()
        ana, ben = api(server, "ana"), api(server, "ben")
        thread = await ana.thread(community)  # threads count as posts: 1 of 3
        post = await ana.post(thread, "one")
        await ana.post(thread, "two")
        refused = await ana.call("POST", f"/api/threads/{thread}/posts", json={"body": "three"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # Per user: Ben still comments and reacts, up to his own limits.
        await ben.comment(post["id"], "a")
        await ben.comment(post["id"], "b")
        refused = await ben.call("POST", f"/api/posts/{post['id']}/comments", json={"body": "c"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        await ben.react(post["id"], "like")
        await ben.react(post["id"], "like", on=False)
        refused = await ben.call("PUT", f"/api/posts/{post['id']}/reactions/like")
        assert refused.status_code == 429 and "retry-after" in refused.headers
        # Nothing refused was stored.
        page = await ben.feed(f"community={community}")
        assert [p["body"] for p in page["posts"]] == ["two", "one"]
        assert page["posts"][1]["comments"] == 2


async def test_pages_stay_stable_while_posts_arrive(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana = api(feed_server, "ana")
    thread = await ana.thread(community)
    old = [(await ana.post(thread, f"old {i}"))["id"] for i in range(25)]
    newest_first = list(reversed(old))
    seen: list[str] = []
    batches: list[set[str]] = []  # the posts made between pages, oldest batch first
    page = await ana.feed(f"community={community}&limit=10")
    cursor = page["cursor"]
    await ana.delete(old[3])  # on a later page: it is simply not there when we get to it
    while True:
        seen += [p["id"] for p in page["posts"]]
        # New posts keep arriving between pages: later pages neither repeat nor skip.
        made = await asyncio.gather(*(ana.post(thread, f"new {len(seen)}-{i}") for i in range(3)))
        batches.append({p["id"] for p in made})
        if not page["has_more"]:
            break
        assert page["next_before"] == page["posts"][-1]["cursor"]
        page = await ana.feed(f"community={community}&limit=10&before={page['next_before']}")
    expected = [p for p in newest_first if p != old[3]]
    assert seen == expected
    fresh = await ana.feed(f"community={community}&limit=100")
    assert fresh["cursor"] > cursor
    ids = [p["id"] for p in fresh["posts"]]
    assert len(ids) == 24 + 9 and len(batches) == 3
    # The newest first: the last batch, then the one before, then the first, then the old.
    assert [set(ids[i : i + 3]) for i in (0, 3, 6)] == batches[::-1]
    assert ids[9:] == expected
    cursors = [p["cursor"] for p in fresh["posts"]]
    assert all(a > b for a, b in itertools.pairwise(cursors)), cursors  # strictly newest first


async def test_following_feed_is_communities_threads_and_users_followed(
    feed_server: Running,
) -> None:
    svc = service(feed_server)
    data, web = await svc.community("Data"), await svc.community("Web")
    ana, ben, cy, dee = (api(feed_server, u) for u in ("ana", "ben", "cy", "dee"))
    ana_data = await ana.thread(data, "Ana in Data")
    ben_web = await ben.thread(web, "Ben in Web")
    cy_web = await cy.thread(web, "Cy in Web")
    cy_web_2 = await cy.thread(web, "Cy again")
    posts = {
        "ana": await ana.post(ana_data, "ana"),
        "ben": await ben.post(ben_web, "ben"),
        "cy": await cy.post(cy_web, "cy"),
        "cy2": await cy.post(cy_web_2, "cy2"),
    }
    assert (await dee.feed("following=1"))["posts"] == []
    await dee.follow("communities", data)
    await dee.follow("threads", ben_web)
    await dee.follow("users", "cy")
    page = await dee.feed("following=1")
    assert [p["id"] for p in page["posts"]] == [posts[k]["id"] for k in ("cy2", "cy", "ben", "ana")]
    await dee.follow("users", "cy", on=False)
    assert (await dee.follow("users", "cy", on=False))["changed"] is False
    assert [p["body"] for p in (await dee.feed("following=1"))["posts"]] == ["ben", "ana"]
    assert (await dee.ok("GET", "/api/follows")) == {
        "communities": [data],
        "threads": [ben_web],
        "users": [],
    }


async def test_idempotency_key_makes_a_retried_post_create_nothing(feed_server: Running) -> None:
    community = await service(feed_server).community()
    ana = api(feed_server, "ana")
    thread = await ana.thread(community)
    headers = {"idempotency-key": "post-1"}
    first = await ana.call(
        "POST", f"/api/threads/{thread}/posts", json={"body": "x"}, headers=headers
    )
    again = await ana.call(
        "POST", f"/api/threads/{thread}/posts", json={"body": "x"}, headers=headers
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len((await ana.feed(f"community={community}"))["posts"]) == 1
    other = await ana.call(
        "POST", f"/api/posts/{first.json()['id']}/comments", json={"body": "y"}, headers=headers
    )
    assert other.status_code == 409  # the key names a post already


# Milestones -------------------------------------------------------------------------------


async def _verified_room(server: Running) -> tuple[dict[str, Any], str, str]:
    """A room whose mentee ticked two steps; the mentor verified the first. Returns the room
    and the ids of the verified and the unverified step."""
    room = await create_room(
        server.url,
        server.service(),
        [("ana", "Ana Mentor", "mentor"), ("ben", "Ben", "mentee")],
        title="Private: Ana & Ben",
    )
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana Mentor"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    await ben.chat("c1", "private chat: my salary is a secret")

    async def op(client: RoomClient, frame: dict[str, Any]) -> None:
        await client.send(frame)
        ack = await client.recv_until(
            lambda f: f["type"] in ("ack", "error") and f.get("id") == frame["id"]
        )
        assert ack["type"] == "ack", ack

    await op(ben, {"type": "checklist.add", "id": "o1", "item_id": "sql", "title": "SQL joins"})
    await op(ben, {"type": "checklist.add", "id": "o2", "item_id": "dbt", "title": "dbt models"})
    await op(ben, {"type": "checklist.toggle", "id": "o3", "item_id": "sql", "done": True})
    await op(ben, {"type": "checklist.toggle", "id": "o4", "item_id": "dbt", "done": True})
    await op(ana, {"type": "checklist.verify", "id": "o5", "item_id": "sql"})
    return room, "sql", "dbt"


async def test_mentee_shares_a_verified_milestone_to_their_own_thread(
    feed_server: Running,
) -> None:
    room, verified, _ = await _verified_room(feed_server)
    community = await service(feed_server).community()
    ben = api(feed_server, "ben")
    thread = await ben.thread(community, "Ben's data journey")
    url = f"/api/rooms/{room['id']}/checklist/{verified}/share"
    post = await ben.ok("POST", url, {"thread_id": thread}, 201)
    assert post["milestone"]["title"] == "SQL joins"
    assert post["milestone"]["verified_by"] == "Ana Mentor"
    assert post["milestone"]["verified_at"]
    assert set(post["milestone"]) == {"title", "verified_by", "verified_at"}
    assert post["body"] == "SQL joins" and post["author"]["user_id"] == "ben"
    with_body = await ben.ok("POST", url, {"thread_id": thread, "body": "Finally!"}, 201)
    assert with_body["body"] == "Finally!"
    # Nothing else of the room reaches the public feed.
    page = await api(feed_server, "cy").feed(f"community={community}")
    text = str(page)
    assert "salary" not in text and room["id"] not in text and "Private" not in text
    assert [p["milestone"]["title"] for p in page["posts"]] == ["SQL joins", "SQL joins"]


async def test_milestone_share_rules(feed_server: Running) -> None:
    room, verified, unverified = await _verified_room(feed_server)
    community = await service(feed_server).community()
    ana, ben, cy = api(feed_server, "ana"), api(feed_server, "ben"), api(feed_server, "cy")
    ben_thread = await ben.thread(community, "Ben's")
    ana_thread = await ana.thread(community, "Ana's")

    async def share(who: FeedApi, item: str, thread: str) -> int:
        url = f"/api/rooms/{room['id']}/checklist/{item}/share"
        return (await who.call("POST", url, json={"thread_id": thread})).status_code

    assert await share(ana, verified, ana_thread) == 403  # the mentor: not their milestone
    assert await share(cy, verified, ben_thread) == 403  # not a member of the room
    assert await share(service(feed_server), verified, ben_thread) == 403  # no consent
    assert await share(ben, verified, ana_thread) == 403  # someone else's thread
    assert await share(ben, unverified, ben_thread) == 409  # ticked, not verified
    assert await share(ben, "nope", ben_thread) == 404
    assert await share(ben, verified, "nope") == 404
    assert (await api(feed_server, "dee").feed(f"community={community}"))["posts"] == []
    assert await share(ben, verified, ben_thread) == 201
