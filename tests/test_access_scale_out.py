"""Access changes reach every process within a second: a removal made through one process
closes the member's sockets on another, a notes socket alone on its process included; a
revocation ends every socket and event stream of the token on both (issue 16)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.access_client import bearer, call, delete_member, put_member, revoke, within
from tests.backends import Backend, make_backend
from tests.client import RoomClient, close_code, create_room
from tests.feed_client import FeedApi, SSEFollower, WSFollower, close_all, feed_query
from tests.notes_client import NotesClient
from tests.test_scale_out import SERVICE, servers, token

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """One database and one Redis for both processes (as tests/test_scale_out.py)."""
    backend = await make_backend("postgres+redis", tmp_path)  # skips without Redis
    if request.param == "sqlite":
        return Backend(
            "sqlite+redis", f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}", backend.redis_url
        )
    return backend


async def test_removal_through_b_closes_bens_sockets_on_a_within_a_second(shared: Backend) -> None:
    async with servers(shared, 2) as (a, b):
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(a.url, SERVICE, members)
        # A second room where process A holds nothing of the room but Ben's notes socket.
        quiet = await create_room(a.url, SERVICE, members)
        ana = await RoomClient.connect(b.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(a.ws, room["id"], token("ben"))
        ben_notes = await NotesClient.connect(a.ws, room["id"], token("ben"))
        lone_notes = await NotesClient.connect(a.ws, quiet["id"], token("ben"))
        await asyncio.gather(ben_notes.synced.wait(), lone_notes.synced.wait())
        assert await ana.chat("a1", "hello Ben") == 1

        assert (await delete_member(b.url, SERVICE, room["id"], "ben")).status_code == 204
        assert (await delete_member(b.url, SERVICE, quiet["id"], "ben")).status_code == 204
        codes, took = await within(
            1.0, ben.closed_with(), ben_notes.close_code(), lone_notes.close_code()
        )
        assert codes == [4403, 4403, 4403], (codes, took)
        assert (await ana.recv_until(lambda f: f["type"] == "member.removed"))["user_id"] == "ben"

        for server in (a, b):
            resp = await call(server.url, bearer(token("ben")), "GET", f"/api/rooms/{room['id']}")
            assert resp.status_code == 403
            path = f"/rooms/{room['id']}/ws?token={token('ben')}"
            assert await close_code(server.ws, path) == 4403

        assert (
            await put_member(a.url, SERVICE, room["id"], "ben", "Ben", "mentee")
        ).status_code == 201
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        assert [m["body"] for m in ben.welcome["history"]] == ["hello Ben"]
        assert await ben.chat("b1", "back") == 4


async def test_revocation_through_b_ends_every_connection_on_both_within_a_second(
    shared: Backend,
) -> None:
    async with servers(shared, 2) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        community = await FeedApi(a.url, token("backend", "service")).community()
        old = token("ben")
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        sockets = [await RoomClient.connect(s.ws, room["id"], old) for s in (a, b)]
        notes = [await NotesClient.connect(s.ws, room["id"], old) for s in (a, b)]
        feeds = [await WSFollower.connect(s.ws, feed_query(old, community)) for s in (a, b)]
        streams = [await SSEFollower.connect(s.url, feed_query(old, community)) for s in (a, b)]
        try:
            assert (await revoke(b.url, SERVICE, user_id="ben")).status_code == 204
            waits = [
                *(s.closed_with() for s in sockets),
                *(n.close_code() for n in notes),
                *(f.closed_with() for f in feeds),
                *(_revoked(s) for s in streams),
            ]
            codes, took = await within(1.0, *waits)
            assert codes == [4401] * 6 + ["auth.revoked"] * 2, (codes, took)
            await ana.send({"type": "ping", "id": "still"})  # Ana is untouched
            assert (await ana.recv_until(lambda f: f["type"] == "pong"))["id"] == "still"
            for server in (a, b):
                resp = await call(server.url, bearer(old), "GET", f"/api/rooms/{room['id']}")
                assert resp.status_code == 401
            fresh = token("ben")  # minted after the revocation
            for server in (a, b):
                again = await RoomClient.connect(server.ws, room["id"], fresh)
                assert again.welcome["you"]["user_id"] == "ben"
                resp = await call(server.url, bearer(fresh), "GET", f"/api/rooms/{room['id']}")
                assert resp.status_code == 200
        finally:
            await close_all()


async def _revoked(stream: SSEFollower) -> str:
    """The last event of a stream that then ends."""
    last = ""
    try:
        while True:
            last = (await stream.message()).event
    except ConnectionError:
        return last
