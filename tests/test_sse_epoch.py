"""The event stream's ids carry the database's epoch (``id: EPOCH:SEQ``): a Last-Event-ID
from a database that has since been replaced resumes nothing, as ``epoch=`` on the socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends import Backend, make_backend
from tests.feed_client import FeedApi, SSEFollower, WSFollower, close_all, feed_query
from tests.servers import Running, make_settings, run_server
from tests.test_feed import OPEN_LIMITS


@pytest.fixture(autouse=True)
async def close_followers() -> AsyncIterator[None]:
    yield
    await close_all()


async def posts(server: Running, count: int) -> str:
    """A community with ``count`` posts in it."""
    svc = FeedApi(server.url, server.token("backend", "Backend", role="service"))
    community = await svc.community()
    ana = FeedApi(server.url, server.token("ana"))
    thread = await ana.thread(community)
    for i in range(count):
        await ana.post(thread, f"post {i}")
    return community


async def test_an_event_id_from_a_replaced_database_resumes_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    async with run_server(make_settings(backend, **OPEN_LIMITS)) as first:
        community = await posts(first, 0)
        cy = await SSEFollower.connect(first.url, feed_query(first.token("cy"), community))
        old_epoch = cy.welcome["epoch"]
        welcome_id = cy.welcome["_sse_id"]
        ana = FeedApi(first.url, first.token("ana"))
        thread = await ana.thread(community)
        for i in range(3):
            await ana.post(thread, f"old {i}")
        seen = await cy.events_until(lambda f: f.get("post", {}).get("body") == "old 2")
        old_id = cy.last_event_id  # what a browser sends back as Last-Event-ID
        await close_all()

    # The database is replaced (restored from elsewhere, or a new one): a new epoch.
    (tmp_path / "replaced").mkdir()
    replaced = await make_backend(backend.name, tmp_path / "replaced")
    async with run_server(make_settings(replaced, **OPEN_LIMITS)) as second:
        community = await posts(second, 5)
        query = feed_query(second.token("cy"), community)
        back = await SSEFollower.connect(second.url, query, last_event_id=old_id)
        assert back.welcome["epoch"] != old_epoch
        # As the socket with the old epoch: not recovered (reload, then go live).
        assert back.welcome["recovered"] is False and back.welcome["since"] is None
        socket = await WSFollower.connect(second.ws, query + f"&since=3&epoch={old_epoch}")
        assert socket.welcome["recovered"] is False
        # An id of this database resumes from it; a bare seq is still taken as before.
        new_epoch = back.welcome["epoch"]
        again = await SSEFollower.connect(second.url, query, last_event_id=f"{new_epoch}:3")
        assert again.welcome["recovered"] is True and again.welcome["since"] == 3
        bare = await SSEFollower.connect(second.url, query, last_event_id=3)
        assert bare.welcome["recovered"] is True and bare.welcome["since"] == 3
        resumed = await bare.events_until(lambda f: f.get("post", {}).get("body") == "post 4")
        assert [f["seq"] for f in resumed] == list(range(4, resumed[-1]["seq"] + 1))
        # The ids: EPOCH:SEQ, the welcome's too (EventSource resumes from it).
        assert welcome_id == f"{old_epoch}:{cy.welcome['cursor']}"
        assert [f["_sse_id"] for f in seen] == [f"{old_epoch}:{f['seq']}" for f in seen]
        assert old_id == f"{old_epoch}:{seen[-1]['seq']}"
