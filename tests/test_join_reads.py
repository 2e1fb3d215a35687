"""What a socket's join costs the database (issue 22, item 8): in a reconnect storm every
read a join makes queues for the read pool, so a room's handshakes share one read of the
room, its watch starts from that read, and a client that missed nothing is not replayed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from menteo_testkit.waits import wait_until
from realtime.persistence import turns
from realtime.persistence.database import WARM, Database
from realtime.persistence.turns import TurnReads
from realtime.reads.digest import Windows
from realtime.rooms.welcomes import WelcomeReads
from tests.access_client import put_member
from tests.backends import make_backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server

ROOMS = 8


@contextmanager
def read_checkouts(server: Running) -> Iterator[list[int]]:
    """Connections taken from the pool that ``Database.run`` reads with, while the block
    runs (``[count]``)."""
    assert server.state is not None
    db = server.state.db
    engine = db.reader if db.reader is not None else db.engine.sync_engine
    taken = [0]

    def checkout(*_: Any) -> None:
        taken[0] += 1

    event.listen(engine, "checkout", checkout)
    try:
        yield taken
    finally:
        event.remove(engine, "checkout", checkout)


@contextmanager
def room_reads(server: Running) -> Iterator[list[int]]:
    """Statements that read the ``room`` table, while the block runs (``[count]``)."""
    assert server.state is not None
    db = server.state.db
    engine = db.reader if db.reader is not None else db.engine.sync_engine
    seen = [0]

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen[0] += "FROM room " in statement

    event.listen(engine, "before_cursor_execute", executed)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", executed)


async def rooms_of_two(server: Running, count: int) -> list[str]:
    made = await asyncio.gather(
        *(
            create_room(
                server.url,
                server.service(),
                [(f"m{i}", f"M{i}", "mentor"), (f"e{i}", f"E{i}", "mentee")],
            )
            for i in range(count)
        )
    )
    return [str(room["id"]) for room in made]


async def test_a_join_reads_the_room_once_and_replays_nothing_missed(server: Running) -> None:
    """A lone join into a room no socket here has open: the handshake's read of the room
    (shared by its watch), the stream's first read, the welcome. Before: also the watch's
    own read and a catch-up read after a ``since`` that was already the room's seq."""
    room_ids = await rooms_of_two(server, ROOMS)
    with read_checkouts(server) as taken:
        clients = await asyncio.gather(
            *(
                RoomClient.connect(server.ws, room_id, server.token(f"m{i}"), since=0)
                for i, room_id in enumerate(room_ids)
            )
        )
        joins = taken[0]
    assert all(c.welcome["recovered"] for c in clients)
    # Three per join; the hub's sweep (every 5 s, with Redis) may read once meanwhile.
    assert joins <= 3 * ROOMS + 1, joins


async def test_a_storm_of_both_members_shares_the_reads(server: Running) -> None:
    """Both members of every room at once, as after their server stopped: each is
    welcomed, seeing the other room's members, with at most five reads per room (before:
    eight, two handshake reads, the watch's, two welcomes and two catch-ups)."""
    room_ids = await rooms_of_two(server, ROOMS)
    with read_checkouts(server) as taken:
        clients = await asyncio.gather(
            *(
                RoomClient.connect(server.ws, room_id, server.token(f"{who}{i}"), since=0)
                for i, room_id in enumerate(room_ids)
                for who in ("m", "e")
            )
        )
        joins = taken[0]
    for i, client in enumerate(clients):
        members = {m["user_id"] for m in client.welcome["room"]["members"]}
        assert members == {f"m{i // 2}", f"e{i // 2}"}
    assert joins <= 5 * ROOMS + 1, joins


async def test_a_watch_does_not_start_from_a_read_the_stream_has_moved_past(
    server: Running,
) -> None:
    """A handshake's read kept for the room's watch, then a member added before the watch
    opens: the watch reads again (the kept read lacks the member), so the new member's
    socket is admitted and its room shows them."""
    assert server.state is not None
    rooms = server.state.access.rooms
    room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
    record = await rooms.record(room["id"])  # as a handshake does: kept for the watch
    assert record is not None and [m.user_id for m in record.members] == ["ana"]
    added = await put_member(server.url, server.service(), room["id"], "cy", "Cy", "mentee")
    assert added.status_code == 201, added.text
    watch = await rooms.enter(room["id"])
    try:
        assert watch.view is not None
        assert sorted(m.user_id for m in watch.view.members) == ["ana", "cy"]
    finally:
        await rooms.leave(watch)
    # And with nothing after it, the kept read is the watch's start (no read of its own).
    await rooms.record(room["id"])
    with room_reads(server) as seen:
        watch = await rooms.enter(room["id"])
        try:
            assert watch.view is not None
            assert sorted(m.user_id for m in watch.view.members) == ["ana", "cy"]
        finally:
            await rooms.leave(watch)
    assert seen[0] == 0, seen


async def test_the_read_pool_is_open_before_the_process_is_ready(tmp_path: Path) -> None:
    """PostgreSQL: the read pool's kept connections are open once the server serves, so a
    rolling restart's sockets, all arriving at the process just started, wait for none."""
    backend = await make_backend("postgres+redis", tmp_path)
    async with run_server(make_settings(backend)) as server:
        assert server.state is not None
        pool: Any = server.state.db.engine.sync_engine.pool
        assert pool.checkedin() + pool.checkedout() >= WARM, pool.status()


def _same_transaction(conn: Connection) -> bool:
    """Whether a second statement runs in the first one's transaction (the same id)."""
    first, second = (conn.execute(text("SELECT txid_current()")).scalar() for _ in range(2))
    return bool(first == second)


async def test_a_read_outside_a_snapshot_opens_no_transaction(tmp_path: Path) -> None:
    """PostgreSQL: ``Database.run`` without ``snapshot`` runs its statements outside a
    transaction (under READ COMMITTED each saw a state of its own anyway; BEGIN and ROLLBACK
    were two more round trips for every join's reads), and with ``snapshot`` in one."""
    backend = await make_backend("postgres+redis", tmp_path)
    db = Database(backend.database_url)
    try:
        assert await db.run(_same_transaction) is False
        assert await db.run(_same_transaction, snapshot=True) is True
        assert await db.run(_same_transaction) is False  # a pooled connection: reset
    finally:
        await db.close()


async def test_welcomes_asked_in_one_turn_share_one_read(server: Running) -> None:
    """The welcomes of joins that ask in the same turn of the loop (a reconnect storm) are
    read in one snapshot on one pooled connection, each as it would have been alone: the
    rooms' seqs, checklists and markers read for all, the unread count and digest per
    reader."""
    assert server.state is not None
    room_ids = await rooms_of_two(server, ROOMS)
    ana = await RoomClient.connect(server.ws, room_ids[0], server.token("m0"))
    await ana.send({"type": "checklist.add", "id": "o1", "item_id": "a", "title": "Joins"})
    await ana.send({"type": "chat.send", "id": "c1", "body": "hello"})
    await ana.recv_until(lambda f: f["type"] == "ack" and f["id"] == "c1")
    await ana.send({"type": "read", "seq": 2})
    await ana.recv_until(lambda f: f["type"] == "read.marker")  # sent once it is stored
    welcomes = WelcomeReads(server.state.db, 50)

    def ask(i: int, who: str, since: str | None) -> Any:
        reader = ([f"m{i}", f"e{i}"], f"{who}{i}", 10_000, Windows())
        return welcomes.read(room_ids[i], since, None, None, reader)

    asks = [(i, who, since) for i in range(ROOMS) for who in ("m", "e") for since in (None, "0")]
    with read_checkouts(server) as taken:
        together = await asyncio.gather(*(ask(*a) for a in asks))
    assert taken[0] == 1, taken  # one batch of 32: one connection
    alone = [await ask(*a) for a in asks]  # one room per batch: the prepared statements
    assert together == alone
    ben_resumed, _, checklist, reads = together[3]  # Ben in room 0, resuming from 0
    assert (ben_resumed.last, ben_resumed.recovered) == (2, True)
    assert [item["title"] for item in checklist["items"]] == ["Joins"]
    assert reads["read"] == {"m0": 2, "e0": 0} and reads["unread"] == 1
    assert together[0][3]["unread"] == 0 and together[0][3]["digest"] is None  # Ana read it


async def test_rooms_and_streams_asked_in_one_turn_share_one_read(server: Running) -> None:
    """A reconnect storm's handshakes ask for many rooms' records at once, and the hub for
    many streams' first reads: each kind is read together, on one pooled connection, and
    each answer is the one its read alone gives (a room that does not exist: none)."""
    assert server.state is not None
    room_ids = await rooms_of_two(server, ROOMS)
    ana = await RoomClient.connect(server.ws, room_ids[0], server.token("m0"))
    assert await ana.chat("c1", "hello") == 1
    asked = [*room_ids, "no-such-room"]
    rooms = server.state.access.rooms
    with read_checkouts(server) as taken:
        together = await asyncio.gather(*(rooms.stored(room_id) for room_id in asked))
    assert taken[0] == 1, taken
    alone = [await rooms.stored(room_id) for room_id in asked]
    assert together == alone and together[-1] is None
    members = [sorted(m.user_id for m in room.members) for room in together if room]
    assert members == [[f"e{i}", f"m{i}"] for i in range(ROOMS)]
    views = await asyncio.gather(*(rooms.views.read(room_id) for room_id in asked))
    assert [seq for _, seq in views] == [1] + [0] * (ROOMS - 1) + [0]  # each room's own seq
    assert [room for room, _ in views] == together

    hub = server.state.hub
    spec = (("chat.message",), 50)

    def first(room_id: str) -> Any:
        return hub.first_reads.read((room_id, spec))

    with read_checkouts(server) as taken:
        reads = await asyncio.gather(*(first(room_id) for room_id in asked))
    assert taken[0] == 1, taken
    lone = [await first(room_id) for room_id in asked]
    view = [(last, recent and list(recent.items)) for last, recent in reads]
    assert view == [(last, recent and list(recent.items)) for last, recent in lone]
    assert view[0][0] == 1 and [seq for seq, _ in view[0][1] or []] == [1]
    assert view[-1] == (0, [])


async def test_asks_made_while_calls_run_go_together_when_one_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most ``depth`` calls of one kind run at once: asks of later turns wait and go in
    one call when a running one ends, each with its own answer (in a storm the batch grows
    with the load, instead of a small call per turn)."""
    monkeypatch.setattr(turns, "STUCK", 60.0)  # a slow machine's calls are not stuck ones
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    release = threading.Event()
    calls: list[list[int]] = []

    def read_many(conn: Connection, asks: list[int]) -> list[int]:
        calls.append(list(asks))
        if len(calls) <= 2:  # the first two calls run until released
            release.wait(10)
        return [conn.execute(text("SELECT :n * 10"), {"n": n}).scalar_one() for n in asks]

    reads: TurnReads[int, int] = TurnReads(db, read_many, depth=2)
    try:
        answers = [asyncio.ensure_future(reads.read(0))]
        await wait_until(lambda: len(calls) == 1, "the first call runs")
        answers.append(asyncio.ensure_future(reads.read(1)))
        await wait_until(lambda: len(calls) == 2, "the second call runs")
        for n in (2, 3, 4):  # each in a turn of its own
            answers.append(asyncio.ensure_future(reads.read(n)))
            for _ in range(3):
                await asyncio.sleep(0)  # turns of the loop pass: no call starts
        assert calls == [[0], [1]]
        release.set()
        assert await asyncio.gather(*answers) == [0, 10, 20, 30, 40]
        assert calls == [[0], [1], [2, 3, 4]]
    finally:
        release.set()
        await db.close()


async def test_calls_that_hang_do_not_hold_back_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two calls that hang (a connection gone half-dead) would hold every later read of
    their kind: past ``STUCK`` they no longer count, and the asks waiting go in a call of
    their own."""
    monkeypatch.setattr(turns, "STUCK", 0.3)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    release = threading.Event()

    def read_many(conn: Connection, asks: list[int]) -> list[int]:
        if asks[0] < 2:  # the first two calls hang until released
            release.wait(10)
        return list(asks)

    reads: TurnReads[int, int] = TurnReads(db, read_many, depth=2)
    try:
        answers = [asyncio.ensure_future(reads.read(n)) for n in (0,)]
        await wait_until(lambda: len(reads.running) == 1, "the first call runs")
        answers.append(asyncio.ensure_future(reads.read(1)))
        await wait_until(lambda: len(reads.running) == 2, "the second call runs")
        answers.append(asyncio.ensure_future(reads.read(2)))
        started = time.monotonic()
        await wait_until(lambda: len(reads.running) == 3, "a third call past the stuck ones")
        assert 0.2 < time.monotonic() - started < 5
        release.set()
        assert await asyncio.gather(*answers) == [0, 1, 2]
    finally:
        release.set()
        await db.close()
