"""Property: whatever the pattern of drops and reconnects, every member ends with the same
gap-free sequence of every acked message, each once."""

from __future__ import annotations

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


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(schedule=actions)
async def test_random_disconnects_every_member_ends_with_the_same_gap_free_log(
    server: Running, schedule: list[tuple[int, str]]
) -> None:
    room = await create_room(server.url, server.service(), [(m, m, "mentee") for m in MEMBERS])
    logs: dict[str, list[tuple[int, str]]] = {m: [] for m in MEMBERS}
    epoch = ""
    clients: dict[str, RoomClient | None] = dict.fromkeys(MEMBERS)

    async def connect(member: str) -> RoomClient:
        nonlocal epoch
        since = logs[member][-1][0] if logs[member] else 0
        client = await RoomClient.connect(
            server.ws, room["id"], server.token(member), since=since, epoch=epoch or None
        )
        epoch = client.welcome["epoch"]
        assert client.welcome["recovered"] or not logs[member]
        return client

    def record(member: str, frame: dict[str, Any]) -> None:
        if frame["type"] == "chat.message":
            logs[member].append((frame["seq"], frame["id"]))

    acked: list[int] = []
    for n, (who, action) in enumerate(schedule):
        member = MEMBERS[who]
        client = clients[member] or await connect(member)
        clients[member] = client
        if action == "send":
            acked.append(await client.chat(f"{member}-{n}", f"message {n}"))
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

    total = len(acked)
    for member in MEMBERS:
        client = clients[member] or await connect(member)
        for frame in client.skipped:
            record(member, frame)
        client.skipped.clear()
        while (logs[member][-1][0] if logs[member] else 0) < total:
            record(member, await client.recv_until(lambda f: f["type"] == "chat.message"))
        await client.close()

    assert acked == list(range(1, total + 1))
    for member in MEMBERS:
        assert [seq for seq, _ in logs[member]] == acked, member
    assert logs["ana"] == logs["ben"] == logs["cy"]
