"""``streams/history.py`` on its own: the one resume rule, paged replay and history pages
read against the real database, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from realtime.persistence.events import StoredEvent, replay_sync
from realtime.streams.history import (
    Replay,
    Resume,
    page_before,
    parse_resume_id,
    resume,
    resume_id,
)
from tests.client import RoomClient
from tests.servers import Running

EPOCH = "e1"


@pytest.mark.parametrize(
    ("since", "epoch", "start"),
    [
        (None, None, None),  # a first connection
        ("", None, None),  # an empty query value
        ("x", None, None),  # not a number
        ("1.5", None, None),
        ("-1", None, None),
        ("11", None, None),  # ahead of the stream: another database's seq
        ("3", "other", None),  # another database's epoch resumes nothing
        ("0", None, 0),
        ("3", None, 3),  # no epoch: accepted as before the epoch existed
        ("3", "", 3),
        ("3", EPOCH, 3),
        ("10", EPOCH, 10),
    ],
)
def test_the_resume_rule(since: str | None, epoch: str | None, start: int | None) -> None:
    resumed = resume(since, epoch, EPOCH, 10)
    assert resumed == Resume(10, start)
    assert resumed.recovered is (start is not None)
    assert resumed.cursor == (10 if start is None else start)


def test_resume_ids() -> None:
    assert resume_id(EPOCH, 7) == "e1:7"
    assert parse_resume_id(resume_id(EPOCH, 7)) == ("7", EPOCH)
    assert parse_resume_id("7") == ("7", None)  # an id from before the epoch
    assert parse_resume_id("a:b:7") == ("7", "a:b")
    assert parse_resume_id(":7") == ("7", "")
    assert parse_resume_id(None) == (None, None)
    assert resume(*parse_resume_id("other:3"), EPOCH, 10) == Resume(10, None)
    assert resume(*parse_resume_id(resume_id(EPOCH, 3)), EPOCH, 10) == Resume(10, 3)


async def _chat(server: Running, room: dict[str, Any], count: int) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for i in range(count):
        await ana.send({"type": "chat.send", "id": f"m{i}", "body": f"message {i}"})
    await ana.recv_until(lambda f: f["type"] == "ack" and f["id"] == f"m{count - 1}")
    await ana.close()


async def test_replay_pages_through_every_event_once(server: Running, room: dict[str, Any]) -> None:
    await _chat(server, room, 7)
    assert server.state is not None
    db = server.state.db
    everything = await db.run(replay_sync, room["id"], 0, 100)
    assert [e.seq for e in everything] == list(range(1, 8))
    for after in (0, 2):
        replay, got, pages = Replay(room["id"], 3), list[StoredEvent](), 0
        while not replay.done and pages < 10:
            page = await replay.next(db, got[-1].seq if got else after)
            got += page
            pages += 1
        assert got == everything[after:]
        assert pages == (3 if after == 0 else 2)  # a short page ends it
    replay = Replay(room["id"], 7)  # a full last page: one more read finds nothing
    async with db.read() as conn:
        assert await replay.next_in(conn, 0) == everything and not replay.done
        assert await replay.next_in(conn, 7) == [] and replay.done


async def test_history_pages_equal_the_database(server: Running, room: dict[str, Any]) -> None:
    await _chat(server, room, 5)
    assert server.state is not None
    db = server.state.db
    types = ("chat.message",)
    everything = await db.run(replay_sync, room["id"], 0, 100)
    for before, limit in ((None, 2), (None, 50), (5, 2), (2, 2), (1, 3)):
        older = [e for e in everything if before is None or e.seq < before]
        page = await page_before(db, room["id"], types, before, limit)
        assert page == (older[-limit:], len(older) > limit)
    events, has_more = await page_before(db, room["id"], types, 5, 2)
    assert [e.seq for e in events] == [3, 4] and has_more
