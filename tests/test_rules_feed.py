"""Rules of the feed socket and the event stream (docs/protocol.md, "The community feed")
that no other test proved: 4400 for a query that names no feed (both, or `following` other
than 1), the stream's `X-Accel-Buffering` header, `Last-Event-ID` winning over `since`, and
503 while the process shuts down. Real servers on both backends, real clients."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from tests.backends import Backend
from tests.feed_client import FeedApi, SSEFollower, WSFollower, close_all, feed_query, seqs
from tests.servers import Running, make_settings, run_server

TIMEOUT = 10.0
# Posts are rate-limited per user; 0 turns that limit off (these tests are about the feed).
NO_POST_LIMIT = {"feed_post_rate_per_second": 0.0}


@pytest.fixture(autouse=True)
async def close_followers() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def feed_server(backend: Backend) -> AsyncIterator[Running]:
    async with run_server(make_settings(backend, **NO_POST_LIMIT)) as running:
        yield running
        await close_all()  # before the server stops: an open event stream delays shutdown


async def community_and_thread(server: Running) -> tuple[str, str, FeedApi]:
    community = await FeedApi(server.url, server.token("backend", role="service")).community()
    ana = FeedApi(server.url, server.token("ana"))
    return community, await ana.thread(community), ana


async def refused(server: Running, reason: str) -> int:
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(rf'^menteo_sockets_refused_total{{reason="{reason}"}} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


async def test_a_query_that_names_no_feed_closes_4400_and_is_a_400(feed_server: Running) -> None:
    """Neither or both of `community` and `following`, or `following` not `1`: the feed
    socket closes 4400, the event stream and `GET /api/feed` answer 400 `invalid`; each
    socket or stream refusal is counted as `invalid`. `following=1` and `community=ID`
    are feeds."""
    community, _, _ = await community_and_thread(feed_server)
    token = feed_server.token("cy")
    not_a_feed = [
        f"token={token}",
        f"token={token}&community={community}&following=1",
        f"token={token}&following=0",
        f"token={token}&following=2",
        f"token={token}&following=true",
        f"token={token}&following=",
        f"token={token}&community={community}&following=0",
    ]
    before = await refused(feed_server, "invalid")
    api = FeedApi(feed_server.url, token)
    for query in not_a_feed:
        follower = await WSFollower.connect(feed_server.ws, query, welcome=False)
        assert await follower.closed_with() == 4400, query
        stream = await SSEFollower.connect(feed_server.url, query, welcome=False)
        assert stream.status == 400, query
        page = await api.call("GET", "/api/feed?" + query.removeprefix(f"token={token}&"))
        assert page.status_code == 400, query
        assert page.json()["error"]["code"] == "invalid", query
    assert await refused(feed_server, "invalid") == before + 2 * len(not_a_feed)
    for query in (feed_query(token, following=True), feed_query(token, community)):
        follower = await WSFollower.connect(feed_server.ws, query)
        assert follower.welcome["type"] == "welcome", query
        await follower.close()


async def test_the_event_stream_tells_proxies_not_to_buffer(feed_server: Running) -> None:
    """200, `Content-Type: text/event-stream` and `X-Accel-Buffering: no` (nginx passes
    each event on at once)."""
    community, _, _ = await community_and_thread(feed_server)
    stream = await SSEFollower.connect(
        feed_server.url, feed_query(feed_server.token("cy"), community)
    )
    assert stream.status == 200
    assert stream.headers["x-accel-buffering"] == "no"
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.welcome["type"] == "welcome"


async def test_last_event_id_wins_over_since(feed_server: Running) -> None:
    """`Last-Event-ID: EPOCH:CURSOR` wins over `since`, whichever is further: the stream
    resumes after the header's cursor; a header from another epoch resumes nothing even
    with a usable `since`."""
    community, thread, ana = await community_and_thread(feed_server)
    posts = [await ana.post(thread, f"post {i}") for i in range(1, 6)]
    cursors = [int(p["cursor"]) for p in posts]
    token = feed_server.token("cy")
    epoch = (await WSFollower.connect(feed_server.ws, feed_query(token, community))).welcome[
        "epoch"
    ]

    for header_at, since_at in ((3, 1), (1, 3)):
        query = feed_query(token, community, since=cursors[since_at - 1])
        stream = await SSEFollower.connect(
            feed_server.url, query, last_event_id=f"{epoch}:{cursors[header_at - 1]}"
        )
        assert stream.welcome["recovered"] is True
        assert stream.welcome["since"] == cursors[header_at - 1]
        assert stream.welcome["_sse_id"] == f"{epoch}:{cursors[header_at - 1]}"
        missed = await stream.events_until(lambda f: f["seq"] == cursors[-1], TIMEOUT)
        assert seqs(missed) == cursors[header_at:], (header_at, since_at)
        await stream.close()

    query = feed_query(token, community, since=cursors[0])
    other = await SSEFollower.connect(feed_server.url, query, last_event_id=f"another:{cursors[2]}")
    assert other.welcome["recovered"] is False
    live = await ana.post(thread, "live")
    got = await other.events_until(lambda f: f["type"] == "feed.post", TIMEOUT)
    assert seqs(got) == [live["cursor"]]  # live only: nothing was replayed


async def test_the_event_stream_answers_503_while_the_process_stops(backend: Backend) -> None:
    """A process that stops (here: its writer died, which stops it as SIGTERM would)
    answers a new event stream 503 `unavailable` with the JSON error body, ends the
    streams it had open, and refuses new sockets at the handshake."""
    async with run_server(make_settings(backend, **NO_POST_LIMIT)) as server:
        assert server.state is not None
        community, _, _ = await community_and_thread(server)
        query = feed_query(server.token("cy"), community)
        before = await SSEFollower.connect(server.url, query)
        assert before.status == 200
        stop_asked = asyncio.Event()
        server.state.stop_server = stop_asked.set  # what `serve` gives: stop uvicorn
        writer = server.state.writer.task
        assert writer is not None
        writer.cancel()  # as a bug or a native crash would end it
        await asyncio.wait_for(stop_asked.wait(), TIMEOUT)

        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
            late = await http.get(f"/feed/stream?{query}")
        assert late.status_code == 503
        assert late.json()["error"]["code"] == "unavailable"
        with pytest.raises(ConnectionError, match="the event stream ended"):
            await before.recv(TIMEOUT)
        # The feed socket refuses new connections too: HTTP 403 at the handshake.
        with pytest.raises(websockets.InvalidStatus) as refused_socket:
            await websockets.connect(f"{server.ws}/feed/ws?{query}", open_timeout=TIMEOUT)
        assert refused_socket.value.response.status_code == 403
        await close_all()
