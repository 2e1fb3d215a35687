"""Property: any interleaving of two members' checklist edits, with drops and resumes,
ends with identical views that equal the server's state."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checklist_view import ChecklistView
from tests.client import RoomClient, create_room
from tests.servers import Running

pytestmark = pytest.mark.slow

ITEMS = ["i0", "i1", "i2", "i3", "i4"]
item = st.sampled_from(ITEMS)
ops = st.one_of(
    st.builds(
        lambda i, a: {"type": "checklist.add", "item_id": i, "title": f"step {i}", "after": a},
        item,
        st.one_of(st.none(), item),
    ),
    st.builds(lambda i: {"type": "checklist.add", "item_id": i, "title": f"step {i}"}, item),
    st.builds(
        lambda i, d: {"type": "checklist.toggle", "item_id": i, "done": d}, item, st.booleans()
    ),
    st.builds(
        lambda i, t: {"type": "checklist.rename", "item_id": i, "title": t},
        item,
        st.text(min_size=1, max_size=8).filter(str.strip),
    ),
    st.builds(
        lambda i, a: {"type": "checklist.move", "item_id": i, "after": a},
        item,
        st.one_of(st.none(), item),
    ),
    st.builds(lambda i: {"type": "checklist.remove", "item_id": i}, item),
    st.builds(lambda i: {"type": "checklist.verify", "item_id": i}, item),
)
# Each step: who acts, a burst of operations sent without waiting, and whether to drop after.
steps = st.lists(
    st.tuples(
        st.sampled_from(["ana", "ben"]), st.lists(ops, min_size=1, max_size=4), st.booleans()
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=steps)
async def test_concurrent_edits_converge(
    server: Running, script: list[tuple[str, list[dict[str, Any]], bool]]
) -> None:
    room = await create_room(
        server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    )
    clients: dict[str, RoomClient] = {}
    views: dict[str, ChecklistView] = {}
    epoch = ""

    async def connect(name: str) -> None:
        nonlocal epoch
        view = views.get(name)
        client = await RoomClient.connect(
            server.ws,
            room["id"],
            server.token(name),
            since=view.seq if view else None,
            epoch=epoch or None,
        )
        epoch = client.welcome["epoch"]
        if view is None or not client.welcome["recovered"]:
            views[name] = ChecklistView(client.welcome)
        clients[name] = client

    def absorb(name: str, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            views[name].feed(frame)

    for name in ("ana", "ben"):
        await connect(name)
    counter = 0
    pending: dict[str, list[str]] = {"ana": [], "ben": []}
    for name, burst, drop in script:
        for frame in burst:
            counter += 1
            frame = {**frame, "id": f"{name}-{counter}"}
            await clients[name].send(frame)
            pending[name].append(frame["id"])
        for op_id in pending[name]:  # every op is answered: ack or a documented error
            answer = await clients[name].recv_until(
                lambda f, i=op_id: f.get("id") == i and f["type"] in ("ack", "error")
            )
            assert answer["type"] == "ack" or answer["code"] in (
                "not_found",
                "invalid",
                "conflict",
                "forbidden",
            )
        pending[name].clear()
        if drop:
            absorb(name, [f for f in clients[name].skipped if f["type"].startswith("checklist.")])
            clients[name].ws.transport.abort()
            await connect(name)

    async with httpx.AsyncClient(base_url=server.url) as http:
        final = (
            await http.get(f"/api/rooms/{room['id']}/checklist", headers=server.service())
        ).json()
    for name, client in clients.items():
        absorb(name, [f for f in client.skipped if f["type"].startswith("checklist.")])
        client.skipped.clear()
        while views[name].seq < final["seq"]:
            views[name].feed(await client.recv_until(lambda f: f["type"].startswith("checklist.")))
    expected = {"items": final["items"], "progress": final["progress"]}
    assert views["ana"].state() == views["ben"].state() == expected
