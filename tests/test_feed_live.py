"""The live feed over real sockets: WebSocket and Server-Sent Events followers, resume,
reaction aggregation, follow changes, deletions."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from menteo_testkit.waits import wait_event
from tests.backends import Backend
from tests.feed_client import (
    FeedApi,
    SSEFollower,
    WSFollower,
    close_all,
    feed_query,
    seqs,
    strip,
)
from tests.servers import Running, make_settings, run_server
from tests.test_feed import OPEN_LIMITS


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


async def setup(server: Running) -> tuple[str, str, FeedApi, FeedApi]:
    """A community, Ana's thread in it; Ana and Ben."""
    svc = FeedApi(server.url, server.token("backend", "Backend", role="service"))
    community = await svc.community()
    ana, ben = api(server, "ana"), api(server, "ben")
    return community, await ana.thread(community), ana, ben


def is_post(post: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["type"] == "feed.post" and f["post"]["id"] == post["id"]


async def test_ws_sse_and_late_joiner_see_the_same_ordered_events(feed_server: Running) -> None:
    community, thread, ana, ben = await setup(feed_server)
    query = feed_query(feed_server.token("cy"), community)
    ws = await WSFollower.connect(feed_server.ws, query)
    sse = await SSEFollower.connect(
        feed_server.url, feed_query(feed_server.token("dee"), community)
    )
    assert ws.welcome["cursor"] == sse.welcome["cursor"] == 0
    assert sse.headers["content-type"].startswith("text/event-stream")

    one = await ana.post(thread, "Week 1: hello world")
    await ben.comment(one["id"], "welcome!")
    await ben.react(one["id"], "like")
    two = await ana.post(thread, "Week 2: ownership")
    ws_events = await ws.events_until(is_post(two))
    sse_events = await sse.events_until(is_post(two))
    resume_at = sse_events[0]["_sse_id"]  # the late joiner saw only the first event
    assert resume_at == f"{sse.welcome['epoch']}:{one['cursor']}"  # EPOCH:SEQ of post one

    await ben.comment(two["id"], "nice")
    await ben.react(two["id"], "celebrate")
    three = await ana.post(thread, "Week 3: lifetimes")
    late = await SSEFollower.connect(
        feed_server.url, feed_query(feed_server.token("eve"), community), last_event_id=resume_at
    )
    assert late.welcome["recovered"] is True and late.welcome["since"] == one["cursor"]
    ws_events += await ws.events_until(is_post(three))
    sse_events += await sse.events_until(is_post(three))
    late_events = await late.events_until(is_post(three))

    # What was written, in the order it was written (a post's first reaction goes out at
    # once), each event naming its post; the same on both transports and for the late one.
    expected = [
        ("feed.post", one["id"]),
        ("feed.comment", one["id"]),
        ("feed.reaction", one["id"]),
        ("feed.post", two["id"]),
        ("feed.comment", two["id"]),
        ("feed.reaction", two["id"]),
        ("feed.post", three["id"]),
    ]
    assert [(f["type"], f["post_id"]) for f in ws_events] == expected
    assert seqs(ws_events) == list(range(1, len(expected) + 1))  # no gap, no duplicate
    posts = [f for f in ws_events if f["type"] == "feed.post"]
    assert [f["seq"] for f in posts] == [one["cursor"], two["cursor"], three["cursor"]]
    assert strip(sse_events) == strip(ws_events)
    assert strip(late_events) == strip(ws_events)[1:]  # exactly what followed its id
    reactions = [f["counts"] for f in ws_events if f["type"] == "feed.reaction"]
    zero = {"like": 0, "celebrate": 0, "insightful": 0, "support": 0}
    assert reactions == [zero | {"like": 1}, zero | {"celebrate": 1}]
    comment = next(f for f in ws_events if f["type"] == "feed.comment")
    assert comment["comment"]["body"] == "welcome!" and comment["post_id"] == one["id"]
    assert comment["author"] == {"user_id": "ben", "name": "Ben"}

    # And everyone is live afterwards.
    four = await ana.post(thread, "Week 4")
    for follower in (ws, sse, late):
        assert (await follower.events_until(is_post(four)))[-1]["seq"] == four["cursor"]


async def test_a_post_and_a_comment_read_the_same_live_acked_and_paged(
    feed_server: Running,
) -> None:
    """One builder each for posts and comments: what a follower receives is what the write
    answered and what the REST pages show, field for field and in the same order."""
    community, thread, ana, ben = await setup(feed_server)
    ws = await WSFollower.connect(feed_server.ws, feed_query(feed_server.token("cy"), community))
    acked = await ana.post(thread, "Week 1: hello world")
    live = (await ws.recv_until(is_post(acked)))["post"]
    paged = (await ben.feed(f"community={community}"))["posts"][0]
    assert paged.pop("my_reactions") == []
    # As protocol.md lists it, field for field, with what was written.
    assert list(acked) == [
        "id",
        "cursor",
        "thread_id",
        "thread_title",
        "community_id",
        "author",
        "body",
        "milestone",
        "created_at",
        "reactions",
        "comments",
    ]
    assert acked["body"] == "Week 1: hello world" and acked["author"] == {
        "user_id": "ana",
        "name": "Ana",
    }
    assert (acked["thread_id"], acked["community_id"], acked["milestone"]) == (
        thread,
        community,
        None,
    )
    assert acked["reactions"] == {"like": 0, "celebrate": 0, "insightful": 0, "support": 0}
    assert acked["comments"] == 0 and acked["thread_title"] == "Learning Rust"
    assert list(live.items()) == list(acked.items()) == list(paged.items())

    comment = await ben.comment(acked["id"], "welcome!")
    frame = await ws.recv_until(lambda f: f["type"] == "feed.comment")
    detail = await ben.ok("GET", f"/api/posts/{acked['id']}")
    assert detail["post"]["comments"] == 1
    assert list(comment) == ["id", "post_id", "cursor", "author", "body", "created_at"]
    assert (comment["post_id"], comment["body"]) == (acked["id"], "welcome!")
    assert comment["author"] == {"user_id": "ben", "name": "Ben"}
    assert comment["cursor"] == frame["seq"] == acked["cursor"] + 1
    shown = [list(c.items()) for c in (frame["comment"], comment, detail["comments"][0])]
    assert shown[0] == shown[1] == shown[2]


async def test_resume_delivers_exactly_what_was_missed(feed_server: Running) -> None:
    community, thread, ana, ben = await setup(feed_server)
    query = feed_query(feed_server.token("cy"), community)
    steady = await WSFollower.connect(feed_server.ws, query)
    leaver = await WSFollower.connect(feed_server.ws, query)
    sse = await SSEFollower.connect(feed_server.url, query)
    first = await ana.post(thread, "before")
    await leaver.events_until(is_post(first))
    await sse.events_until(is_post(first))
    last_id = sse.last_event_id
    await leaver.close()
    await sse.close()

    missed = [await ana.post(thread, f"while away {i}") for i in range(3)]
    await ben.comment(missed[0]["id"], "c")
    after = await ana.post(thread, "after")
    everything = await steady.events_until(is_post(after))
    assert [(e["type"], e["post_id"]) for e in everything] == [
        ("feed.post", first["id"]),
        *[("feed.post", m["id"]) for m in missed],
        ("feed.comment", missed[0]["id"]),
        ("feed.post", after["id"]),
    ]

    back = await WSFollower.connect(
        feed_server.ws, feed_query(feed_server.token("cy"), community, since=first["cursor"])
    )
    assert back.welcome["recovered"] and back.welcome["cursor"] >= after["cursor"]
    again = await SSEFollower.connect(feed_server.url, query, last_event_id=last_id)
    expected = strip(everything[1:])
    assert strip(await back.events_until(is_post(after))) == expected
    assert strip(await again.events_until(is_post(after))) == expected


async def test_without_since_a_follower_gets_live_events_only(feed_server: Running) -> None:
    community, thread, ana, _ = await setup(feed_server)
    past = await ana.post(thread, "already in the past")
    query = feed_query(feed_server.token("cy"), community)
    ws = await WSFollower.connect(feed_server.ws, query)
    sse = await SSEFollower.connect(feed_server.url, query)
    assert ws.welcome["recovered"] is False and ws.welcome["cursor"] == past["cursor"]
    # EventSource resumes from here (ids are EPOCH:SEQ).
    assert sse.welcome["_sse_id"] == f"{sse.welcome['epoch']}:{past['cursor']}"
    new = await ana.post(thread, "live")
    for follower in (ws, sse):
        events = await follower.events_until(lambda f: f["type"] == "feed.post")
        assert [e["post"]["id"] for e in events] == [new["id"]]
    # A since the feed has not reached (another database, a made-up id) is live only too.
    ahead = await SSEFollower.connect(feed_server.url, query, last_event_id=10_000)
    assert ahead.welcome["recovered"] is False
    other = await WSFollower.connect(feed_server.ws, query + "&since=nonsense")
    assert other.welcome["recovered"] is False


async def test_catch_up_while_posts_arrive_has_no_gap_or_duplicate(backend: Backend) -> None:
    settings = make_settings(backend, replay_page=3, **OPEN_LIMITS)
    async with run_server(settings) as server:
        community, thread, ana, _ = await setup(server)
        for i in range(10):
            await ana.post(thread, f"early {i}")
        query = feed_query(server.token("cy"), community)

        async def keep_posting() -> dict[str, Any]:
            posts = [await ana.post(thread, f"during {i}") for i in range(20)]
            return posts[-1]

        writer = asyncio.create_task(keep_posting())
        ws = await WSFollower.connect(server.ws, query + "&since=0")
        sse = await SSEFollower.connect(server.url, query, last_event_id=0)
        last = await writer
        for follower in (ws, sse):
            events = await follower.events_until(is_post(last))
            assert seqs(events) == list(range(1, last["cursor"] + 1))
        await close_all()


async def test_a_reaction_burst_becomes_a_few_events_with_the_final_counts(
    backend: Backend,
) -> None:
    window = 1.0
    settings = make_settings(backend, feed_reaction_window=window, **OPEN_LIMITS)
    async with run_server(settings) as server:
        community, thread, ana, _ = await setup(server)
        post = await ana.post(thread, "Got my first data engineering job!")
        follower = await WSFollower.connect(server.ws, feed_query(server.token("cy"), community))
        users = [api(server, f"fan{i}") for i in range(10)]
        kinds = ("like", "celebrate", "insightful", "support")
        burst = len(users) * len(kinds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(u.react(post["id"], k) for u in users for k in kinds))
        elapsed = loop.time() - started
        final = dict.fromkeys(kinds, len(users))

        reactions = await follower.events_until(
            lambda f: f["type"] == "feed.reaction" and f["counts"] == final
        )
        assert all(f["type"] == "feed.reaction" for f in reactions)
        # At most one at once, then one per window while the burst lasts, then the last.
        assert len(reactions) <= 2 + elapsed / window, (len(reactions), elapsed)
        assert len(reactions) < burst // 4, [f["counts"] for f in reactions]
        for kind in kinds:  # counts read under the lock, in seq order: never going back
            counts = [f["counts"][kind] for f in reactions]
            assert all(a <= b for a, b in itertools.pairwise(counts)), (kind, counts)
        assert reactions[-1]["author"]["user_id"] == "system"
        # Anything after it (up to a marker) carries the same final counts.
        marker = await ana.post(thread, "marker")
        tail = await follower.events_until(is_post(marker))
        assert all(f["counts"] == final for f in tail if f["type"] == "feed.reaction")
        page = await ana.feed(f"community={community}")
        assert page["posts"][1]["reactions"] == final

        # Taking them back is aggregated the same way.
        await asyncio.gather(*(u.react(post["id"], "like", on=False) for u in users))
        back = await follower.events_until(
            lambda f: f["type"] == "feed.reaction" and f["counts"]["like"] == 0
        )
        assert len(back) < len(users) // 2
        await close_all()


async def test_follow_changes_apply_to_open_connections(feed_server: Running) -> None:
    community, thread, ana, ben = await setup(feed_server)
    svc = FeedApi(feed_server.url, feed_server.token("backend", "Backend", role="service"))
    other = await svc.community("Web")
    ben_thread = await ben.thread(other, "Ben in Web")
    dee = api(feed_server, "dee")
    query = feed_query(feed_server.token("dee"), following=True)
    ws = await WSFollower.connect(feed_server.ws, query)
    sse = await SSEFollower.connect(feed_server.url, query)
    assert ws.welcome["follows"] == {"communities": [], "threads": [], "users": []}

    unseen = await ana.post(thread, "nobody follows this yet")
    await dee.follow("communities", community)
    seen = await ana.post(thread, "now dee follows the community")
    for follower in (ws, sse):
        events = await follower.events_until(lambda f: f["type"] == "feed.post")
        assert [e["post"]["id"] for e in events] == [seen["id"]]  # not ``unseen``
    assert unseen["cursor"] < seen["cursor"]  # it came first, and was not delivered

    await dee.follow("communities", community, on=False)
    await dee.follow("users", "ben")
    await ana.post(thread, "no longer followed")
    bens = await ben.post(ben_thread, "dee follows Ben")
    for follower in (ws, sse):
        events = await follower.events_until(lambda f: f["type"] == "feed.post")
        assert [e["post"]["id"] for e in events] == [bens["id"]]
    # A new connection reads the follows from the database.
    fresh = await WSFollower.connect(feed_server.ws, query)
    assert fresh.welcome["follows"]["users"] == ["ben"]


async def test_a_deleted_post_leaves_live_streams_and_replays(feed_server: Running) -> None:
    community, thread, ana, ben = await setup(feed_server)
    query = feed_query(feed_server.token("cy"), community)
    ws = await WSFollower.connect(feed_server.ws, query)
    sse = await SSEFollower.connect(feed_server.url, query)
    doomed = await ana.post(thread, "oops, wrong thread")
    await ben.comment(doomed["id"], "?")
    kept = await ana.post(thread, "the right post")
    deleted = await ana.delete(doomed["id"])
    for follower in (ws, sse):
        events = await follower.events_until(lambda f: f["type"] == "feed.delete")
        assert events[-1]["post_id"] == doomed["id"] and events[-1]["seq"] == deleted["cursor"]
        assert events[0]["post"]["body"] == "oops, wrong thread"  # live: it was there
    replay = await WSFollower.connect(
        feed_server.ws, feed_query(feed_server.token("cy"), community, since=0)
    )
    events = await replay.events_until(lambda f: f["type"] == "feed.delete")
    assert [(e["type"], e["post_id"]) for e in events] == [
        ("feed.post", kept["id"]),
        ("feed.delete", doomed["id"]),
    ]


async def test_a_deleted_comment_leaves_live_streams_and_replays(feed_server: Running) -> None:
    community, thread, ana, ben = await setup(feed_server)
    query = feed_query(feed_server.token("cy"), community)
    ws = await WSFollower.connect(feed_server.ws, query)
    sse = await SSEFollower.connect(feed_server.url, query)
    post = await ana.post(thread, "a post with comments")
    doomed = await ben.comment(post["id"], "a comment I regret")
    kept = await ben.comment(post["id"], "a comment I keep")
    deleted = await ben.ok("DELETE", f"/api/posts/{post['id']}/comments/{doomed['id']}")
    for follower in (ws, sse):
        events = await follower.events_until(lambda f: f["type"] == "feed.comment.delete")
        gone = events[-1]
        assert gone["seq"] == deleted["cursor"] and gone["comment_id"] == doomed["id"]
        assert gone["post_id"] == post["id"] and gone["community_id"] == community
    replay = await WSFollower.connect(
        feed_server.ws, feed_query(feed_server.token("cy"), community, since=0)
    )
    events = await replay.events_until(lambda f: f["type"] == "feed.comment.delete")
    # The deleted comment's words are gone from the replay; its deletion is kept.
    assert [(e["type"], e.get("comment", {}).get("id")) for e in events] == [
        ("feed.post", None),
        ("feed.comment", kept["id"]),
        ("feed.comment.delete", None),
    ]
    assert "regret" not in str(events)


async def test_sse_heartbeats_keep_an_idle_stream_open(backend: Backend) -> None:
    async with run_server(make_settings(backend, feed_heartbeat=0.1)) as server:
        community, _, _, _ = await setup(server)
        sse = await SSEFollower.connect(server.url, feed_query(server.token("cy"), community))
        await wait_event(sse.comment_seen, "a keep-alive comment", 5)
        assert sse.comments >= 1
        await close_all()


async def test_sse_refusals_are_http_errors(feed_server: Running) -> None:
    community, _, _, _ = await setup(feed_server)
    token = feed_server.token("cy")
    cases = [
        (feed_query(None, community), 401),
        (feed_query("bad-token", community), 401),
        (feed_query(token), 400),
        (feed_query(token, community, following=True), 400),
        (feed_query(token, "nope"), 404),
    ]
    for query, status in cases:
        refused = await SSEFollower.connect(feed_server.url, query, welcome=False)
        assert refused.status == status, query
    # A Bearer header works instead of the query (for clients that can set headers).
    bearer = await SSEFollower.connect(
        feed_server.url,
        feed_query(None, community),
        headers={"authorization": "Bearer " + token},
    )
    assert bearer.welcome["you"]["user_id"] == "cy"


async def test_ws_refusals_close_codes_and_ping(feed_server: Running) -> None:
    community, _, _, _ = await setup(feed_server)
    token = feed_server.token("cy")
    for query, code in [
        (feed_query(None, community), 4401),
        (feed_query(token), 4400),
        (feed_query(token, "nope"), 4404),
    ]:
        follower = await WSFollower.connect(feed_server.ws, query, welcome=False)
        assert await follower.closed_with() == code, query
    ws = await WSFollower.connect(feed_server.ws, feed_query(token, community))
    await ws.send({"type": "ping", "id": "p1"})
    assert await ws.recv() == {"type": "pong", "id": "p1"}
    await ws.send({"type": "chat.send", "id": "x", "body": "read-only"})
    error = await ws.recv()
    assert error["type"] == "error" and error["code"] == "unknown_type"


async def test_rest_cursor_then_live_from_it_misses_nothing(feed_server: Running) -> None:
    community, thread, ana, _ = await setup(feed_server)
    for i in range(3):
        await ana.post(thread, f"p{i}")
    page = await ana.feed(f"community={community}&limit=2")
    later = await ana.post(thread, "after the page")
    ws = await WSFollower.connect(
        feed_server.ws, feed_query(feed_server.token("cy"), community, since=page["cursor"])
    )
    assert [e["post"]["id"] for e in await ws.events_until(is_post(later))] == [later["id"]]


async def test_sse_content_is_never_html(feed_server: Running) -> None:
    community, thread, ana, _ = await setup(feed_server)
    sse = await SSEFollower.connect(feed_server.url, feed_query(feed_server.token("cy"), community))
    body = "<img src=x onerror=alert(1)>\n\ndata: forged\n\n"
    post = await ana.post(thread, body)
    event = (await sse.events_until(is_post(post)))[-1]
    assert event["post"]["body"] == body.strip()  # one data line: newlines stay escaped
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{feed_server.url}/api/posts/{post['id']}", headers=ana.headers)
    assert resp.headers["content-type"] == "application/json"


async def test_tokens_expire_on_open_feed_connections(feed_server: Running) -> None:
    from realtime.auth import issue_token

    community, _, _, _ = await setup(feed_server)
    short = issue_token(feed_server.settings.secret, "cy", "Cy", ttl=2)
    ws = await WSFollower.connect(feed_server.ws, feed_query(short, community))
    sse = await SSEFollower.connect(feed_server.url, feed_query(short, community))
    refreshed = await WSFollower.connect(feed_server.ws, feed_query(short, community))
    fresh = issue_token(feed_server.settings.secret, "cy", "Cy", ttl=3600)
    await refreshed.send({"type": "auth.refresh", "id": "r1", "token": fresh})
    assert (await refreshed.recv_until(lambda f: f["type"] == "auth.refreshed"))["id"] == "r1"
    assert (await ws.recv_until(lambda f: f["type"] == "auth.expiring"))["expires_at"]
    assert await ws.closed_with() == 4401
    # The event stream says why it ends; the client reconnects with a new token and since.
    assert (await sse.recv_until(lambda f: f["type"] == "auth.expired"))["_sse_id"] is None
    with pytest.raises(ConnectionError):
        await sse.recv()
    await refreshed.send({"type": "ping", "id": "still"})
    assert (await refreshed.recv_until(lambda f: f["type"] == "pong"))["id"] == "still"
