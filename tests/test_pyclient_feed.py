"""The Python client's feed followers, over the feed socket and the event stream, against a
real server: each feed event once and in order across a server restart, from a REST page's
cursor on, and an event stream whose token expires renewed and resumed with nothing lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from menteo_testkit.waits import wait_until
from realtime.auth import issue_token
from realtime.client import FeedSocket, FeedStream, Refused
from tests.backends import Backend
from tests.feed_client import FeedApi
from tests.servers import SECRET, Running, ServerProcess, process_env

QUICK = (0.05, 0.5)  # backoff: the tests' servers come back within a second or two
TRANSPORTS = {"ws": FeedSocket, "sse": FeedStream}


def token(user_id: str, **kw: Any) -> str:
    return issue_token(SECRET, user_id, user_id.title(), **kw)


class Seen:
    """The feed events a follower handed on, and an event for each new one."""

    def __init__(self, follower: FeedSocket | FeedStream) -> None:
        self.seqs: list[int] = []
        self.welcomes: list[dict[str, Any]] = []
        self.more = asyncio.Event()
        follower.on("*", self.frame)

    def frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "welcome":
            self.welcomes.append(frame)
        elif frame["type"].startswith("feed."):
            self.seqs.append(frame["seq"])
        self.more.set()

    async def until(self, count: int, what: str) -> None:
        await wait_until(lambda: len(self.seqs) >= count, what, wake=self.more,
                         state=lambda: self.seqs)  # fmt: skip

    async def welcomed(self, count: int, what: str) -> None:
        await wait_until(lambda: len(self.welcomes) >= count, what, wake=self.more)


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_feed_follower_resumes_across_a_restart_with_each_event_once(
    backend: Backend, transport: str
) -> None:
    # Eight posts by Ben; with Redis his budget outlives the restart (it is shared).
    server = ServerProcess(process_env(backend, MENTEO_FEED_POST_BURST="20"))
    await server.start()
    follower = None
    try:
        backend_api = FeedApi(server.url, token("svc", role="service"))
        ben = FeedApi(server.url, token("ben"))
        community = await backend_api.community()
        thread = await ben.thread(community)
        await ben.post(thread, "before the follower")
        page = await FeedApi(server.url, token("cy")).feed(f"community={community}")

        # From the page's cursor on: what comes after it, nothing of what it holds.
        follower = TRANSPORTS[transport](
            server.url, token=token("cy"), community=community, since=page["cursor"],
            backoff=QUICK,
        )  # fmt: skip
        seen = Seen(follower)
        await follower.start()
        for i in range(3):
            await ben.post(thread, f"live {i}")
        await seen.until(3, "three live posts")

        await server.stop()  # sockets close 1012, streams end
        server = ServerProcess(process_env(backend), port=server.port)
        await server.start()
        # Posted before the follower is back: it gets them by resuming.
        posted = [await ben.post(thread, f"after the restart {i}") for i in range(3)]
        await seen.until(6, "the posts made while it reconnected")
        await seen.welcomed(2, "the follower to come back")
        assert seen.seqs == list(range(page["cursor"] + 1, page["cursor"] + 7))
        assert posted[-1]["cursor"] == seen.seqs[-1] == follower.cursor
        assert seen.welcomes[-1]["recovered"] is True
        assert len(seen.welcomes) == follower.connections == 2
    finally:
        if follower is not None:
            await follower.close()
        server.kill()


async def test_event_stream_renews_an_expired_token_and_resumes(server: Running) -> None:
    backend_api = FeedApi(server.url, server.token("svc", role="service"))
    ben = FeedApi(server.url, server.token("ben"))
    community = await backend_api.community()
    thread = await ben.thread(community)
    calls: list[int] = []

    def get_token() -> str:
        calls.append(1)
        return server.token("cy", ttl=600)

    # A 3-second token: the server ends the stream with auth.expired at its expiry.
    stream = FeedStream(
        server.url, token=server.token("cy", ttl=3), get_token=get_token,
        community=community, renew_before=0, backoff=QUICK,
    )  # fmt: skip
    seen = Seen(stream)
    async with stream:
        await ben.post(thread, "before the expiry")
        await seen.until(1, "the post before the expiry")
        await seen.welcomed(2, "the stream to come back with a renewed token")
        await ben.post(thread, "after the expiry")
        await seen.until(2, "the post after the expiry")
        assert seen.seqs == [1, 2] and calls == [1]
        assert seen.welcomes[1]["recovered"] is True


async def test_feed_followers_refused_for_good(server: Running) -> None:
    for cls in (FeedSocket, FeedStream):
        missing = cls(server.url, token=server.token("cy"), community="no-such-community")
        with pytest.raises(Refused) as refused:
            await missing.start()
        assert refused.value.code == (4404 if cls is FeedSocket else 404)
    with pytest.raises(TypeError):
        FeedSocket(server.url, token="t")  # neither community nor following
