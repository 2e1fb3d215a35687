"""Property: whatever the pattern of drops and reconnects, every member ends with the same
gap-free sequence of every acked message, each once.

The expected log is built from what the test sent and the acks it got (docs/protocol.md:
seqs count up from 1 with no gap, a resume with ``since`` and the epoch is recovered and
replays every event after it once, in order), never from the server's own records.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.client import RoomClient, create_room
from tests.servers import Running

pytestmark = pytest.mark.slow

MEMBERS = ["ana", "ben", "cy"]

# (member, action): send a message, drop the socket (no close frame), close it cleanly.
actions = st.lists(
    st.tuples(st.integers(0, len(MEMBERS) - 1), st.sampled_from(["send", "send", "drop", "close"])),
    min_size=1,
    max_size=25,
)


RUNS = itertools.count()  # fresh user ids per example: a user's rate limit spans rooms
Entry = tuple[int, str, str, str]  # seq, client id, author, body


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # count: the profile
@given(schedule=actions)
async def test_random_disconnects_every_member_ends_with_the_same_gap_free_log(
    server: Running, schedule: list[tuple[int, str]]
) -> None:
    n = next(RUNS)
    users = {m: f"{m}{n}" for m in MEMBERS}
    room = await create_room(
        server.url, server.service(), [(u, m, "mentee") for m, u in users.items()]
    )
    logs: dict[str, list[Entry]] = {m: [] for m in MEMBERS}
    epoch = ""
    clients: dict[str, RoomClient | None] = dict.fromkeys(MEMBERS)

    async def connect(member: str) -> RoomClient:
        nonlocal epoch
        since = logs[member][-1][0] if logs[member] else 0
        client = await RoomClient.connect(
            server.ws, room["id"], server.token(users[member]), since=since, epoch=epoch or None
        )
        welcome = client.welcome
        assert welcome["epoch"] == (epoch or welcome["epoch"]), welcome
        epoch = welcome["epoch"]
        # since is never ahead of the room (0 included), the epoch is the room's: recovered.
        assert welcome["recovered"] is True and welcome["history"] == [], welcome
        return client

    def record(member: str, frame: dict[str, Any]) -> None:
        if frame["type"] == "chat.message":
            entry = (frame["seq"], frame["id"], frame["author"]["user_id"], frame["body"])
            logs[member].append(entry)

    sent: list[Entry] = []
    for step, (who, action) in enumerate(schedule):
        member = MEMBERS[who]
        client = clients[member] or await connect(member)
        clients[member] = client
        if action == "send":
            cid, body = f"{member}-{step}", f"message {step}"
            sent.append((await client.chat(cid, body), cid, users[member], body))
        elif action == "drop":
            client.ws.transport.abort()
            clients[member] = None
        else:
            await client.close()
            clients[member] = None
        if clients[member] is None:
            for frame in client.skipped:
                record(member, frame)
            client.skipped.clear()

    total = len(sent)
    for member in MEMBERS:
        client = clients[member] or await connect(member)
        for frame in client.skipped:
            record(member, frame)
        client.skipped.clear()
        while (logs[member][-1][0] if logs[member] else 0) < total:
            record(member, await client.recv_until(lambda f: f["type"] == "chat.message"))
        await client.close()

    assert [entry[0] for entry in sent] == list(range(1, total + 1))  # acked in order, no gap
    for member in MEMBERS:
        assert logs[member] == sent, member  # each once, in order, as sent
