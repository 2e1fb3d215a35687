"""Issue 13's checklist holes, each over real sockets: forged milestones (4), removed items
that slow every room (7), unlimited roadmap copies (8), unbounded position keys (9) and
roadmaps blocked by pre-claimed step ids (10)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from realtime.checklist import store
from realtime.persistence.events import NewEvent
from realtime.persistence.models import ChecklistItem
from tests.backends import Backend
from tests.checklist_view import ChecklistView
from tests.ci import skip_or_fail
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi
from tests.servers import Running, make_settings, run_server
from tests.test_checklist import op

FAST = {  # socket rates out of the way where a test needs many operations quickly
    "rate_per_second": 10_000.0,
    "rate_burst": 10_000,
    "user_rate_per_second": 10_000.0,
    "user_rate_burst": 10_000,
}
TABLE = ChecklistItem.__table__  # type: ignore[attr-defined]
CLIENT_JS = Path(__file__).resolve().parent.parent / "web" / "js" / "checklist.js"
# The web client's ChecklistState on a welcome and frames read as JSON from stdin.
APPLY_JS = """
const { ChecklistState } = await import(process.argv[1]);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const { welcome, frames } = JSON.parse(input);
const state = new ChecklistState();
state.reset(welcome.checklist, welcome.seq);
for (const frame of frames) state.apply(frame);
console.log(JSON.stringify(state.ordered().map((i) => [i.id, i.pos, i.verified])));
"""


async def _web_client_view(welcome: dict[str, Any], frames: list[dict[str, Any]]) -> Any:
    """What web/js/checklist.js makes of these frames (run by node)."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed: the web client's rules cannot run")
    proc = await asyncio.create_subprocess_exec(
        node,
        "--no-warnings",
        "--input-type=module",
        "-e",
        APPLY_JS,
        str(CLIENT_JS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    payload = json.dumps({"welcome": welcome, "frames": frames}).encode()
    out, _ = await asyncio.wait_for(proc.communicate(payload), 30)
    assert proc.returncode == 0
    return json.loads(out)


@pytest.fixture
async def fast_server(backend: Backend) -> AsyncIterator[Running]:
    async with run_server(make_settings(backend, **FAST)) as running:
        yield running


async def _room(server: Running) -> dict[str, Any]:
    members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    return await create_room(server.url, server.service(), members, title="Ana & Ben")


def _auth(server: Running, user: str) -> dict[str, str]:
    return {"authorization": "Bearer " + server.token(user, user.title())}


async def _roadmap(server: Running, steps: int) -> str:
    body = {"title": "Path", "steps": [{"title": f"step {n}"} for n in range(1, steps + 1)]}
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.post("/api/roadmaps", json=body, headers=server.service())
    assert resp.status_code == 201, resp.text
    roadmap_id: str = resp.json()["id"]
    return roadmap_id


async def _copy(server: Running, room_id: str, roadmap_id: str, user: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post(
            f"/api/rooms/{room_id}/checklist",
            json={"roadmap_id": roadmap_id},
            headers=_auth(server, user),
        )


async def _checklist(server: Running, room_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get(f"/api/rooms/{room_id}/checklist", headers=server.service())
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


# 4: a verification covers the words the mentor saw ------------------------------------


async def test_renaming_a_verified_step_clears_it_and_a_share_shows_the_verified_title(
    server: Running,
) -> None:
    room = await _room(server)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    add = {"type": "checklist.add", "id": "a1", "item_id": "s1", "title": "Read chapter 1"}
    assert (await op(ben, add))["type"] == "ack"
    tick = {"type": "checklist.toggle", "id": "t1", "item_id": "s1", "done": True}
    assert (await op(ben, tick))["type"] == "ack"
    assert (await op(ana, {"type": "checklist.verify", "id": "v1", "item_id": "s1"}))[
        "type"
    ] == "ack"
    verified = (await _checklist(server, room["id"]))["items"][0]
    assert verified["verified"] and verified["verified_title"] == "Read chapter 1"

    forged = "Shipped the whole product; mentor-certified expert"
    rename = {"type": "checklist.rename", "id": "r1", "item_id": "s1", "title": forged}
    refused = await op(ben, rename)  # renaming a verified step is the mentor's (role table)
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert (await _checklist(server, room["id"]))["items"][0] == verified
    # The mentor's own rename of it still clears the verification: it covers the old words.
    assert (await op(ana, {**rename, "id": "r2"}))["type"] == "ack"
    event = await ana.recv_until(lambda f: f["type"] == "checklist.rename")
    assert event["verified"] is False  # durable: every client clears it
    item = (await _checklist(server, room["id"]))["items"][0]
    assert item["title"] == forged and not item["verified"] and item["verified_by"] is None
    assert item["verified_title"] is None
    seen = [f for f in ana.skipped if f["type"].startswith("checklist.")] + [event]
    web = await _web_client_view(ana.welcome, sorted(seen, key=lambda f: f["seq"]))
    assert web == [["s1", item["pos"], False]]  # the web client clears it too

    community = await FeedApi(server.url, server.token("backend", role="service")).community()
    thread = await FeedApi(server.url, server.token("ben")).thread(community, "Ben's")
    share_url = f"/api/rooms/{room['id']}/checklist/s1/share"
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.post(
            share_url, json={"thread_id": thread}, headers=_auth(server, "ben")
        )
        assert refused.status_code == 409  # the forged title was never verified
        # The mentor verifies the new words: now those are what a share shows.
        assert (await op(ana, {"type": "checklist.verify", "id": "v2", "item_id": "s1"}))[
            "type"
        ] == "ack"
        shared = await http.post(
            share_url, json={"thread_id": thread}, headers=_auth(server, "ben")
        )
    assert shared.status_code == 201, shared.text
    assert shared.json()["milestone"]["title"] == forged


# 10: copied step ids cannot be claimed beforehand ----------------------------------------


async def test_a_verify_covers_the_words_the_mentor_saw(server: Running) -> None:
    """Found by an outside review: a rename sent just before the mentor's verify made the
    mentor verify words never seen. A verify that names its title is refused if it changed."""
    room = await _room(server)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    add = {"type": "checklist.add", "id": "a1", "item_id": "s1", "title": "Read chapter 1"}
    assert (await op(ben, add))["type"] == "ack"
    tick = {"type": "checklist.toggle", "id": "t1", "item_id": "s1", "done": True}
    assert (await op(ben, tick))["type"] == "ack"
    forged = "Shipped the product; mentor-certified expert"
    rename = {"type": "checklist.rename", "id": "r1", "item_id": "s1", "title": forged}
    assert (await op(ben, rename))["type"] == "ack"
    seen = {"type": "checklist.verify", "id": "v1", "item_id": "s1", "title": "Read chapter 1"}
    refused = await op(ana, seen)
    assert refused["type"] == "error" and refused["code"] == "conflict", refused
    item = (await _checklist(server, room["id"]))["items"][0]
    assert not item["verified"] and item["verified_title"] is None
    current = {**seen, "id": "v2", "title": forged}  # the mentor verifies what it says now
    assert (await op(ana, current))["type"] == "ack"
    item = (await _checklist(server, room["id"]))["items"][0]
    assert item["verified"] and item["verified_title"] == forged


async def test_a_member_cannot_preclaim_a_roadmaps_step_ids(server: Running) -> None:
    room = await _room(server)
    roadmap_id = await _roadmap(server, 3)
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    # The ids the copy used to take ({roadmap_id[:12]}-{n}), added and removed by the mentee.
    for n in range(1, 4):
        item = f"{roadmap_id[:12]}-{n}"
        add = {"type": "checklist.add", "id": f"a{n}", "item_id": item, "title": "mine"}
        assert (await op(ben, add))["type"] == "ack"
        remove = {"type": "checklist.remove", "id": f"r{n}", "item_id": item}
        assert (await op(ben, remove))["type"] == "ack"
    # The namespace copies use is refused to members, whatever the id after it.
    for n, item in enumerate((f"roadmap:{roadmap_id}:1", "roadmap:x")):
        claim = {"type": "checklist.add", "id": f"c{n}", "item_id": item, "title": "mine"}
        refused = await op(ben, claim)
        assert refused["type"] == "error" and refused["code"] == "invalid"
    copied = await _copy(server, room["id"], roadmap_id, "ana")
    assert copied.status_code == 201 and copied.json()["added"] == 3, copied.text
    titles = [i["title"] for i in (await _checklist(server, room["id"]))["items"]]
    assert titles == ["step 1", "step 2", "step 3"]


# 8: roadmap copies are charged by the steps they queue ---------------------------------


async def test_roadmap_copies_are_limited_per_room_and_per_user(server: Running) -> None:
    rooms = [await _room(server) for _ in range(3)]
    full = [await _roadmap(server, 500) for _ in range(3)]
    first = await _copy(server, rooms[0]["id"], full[0], "ana")
    assert first.status_code == 201 and first.json()["added"] == 500
    # That room's budget (a whole roadmap) is spent: another copy into it waits.
    again = await _copy(server, rooms[0]["id"], full[1], "ana")
    assert again.status_code == 429
    assert int(again.headers["retry-after"]) >= 1
    assert again.json()["error"]["code"] == "rate_limited"
    # Per user: 1000 steps in a row, then the mentor waits whichever room it is.
    assert (await _copy(server, rooms[1]["id"], full[1], "ana")).status_code == 201
    third = await _copy(server, rooms[2]["id"], full[2], "ana")
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    assert (await _checklist(server, rooms[2]["id"]))["items"] == []  # nothing was queued
    async with httpx.AsyncClient(base_url=server.url) as http:
        metrics = (await http.get("/metrics")).text
    assert 'menteo_limit_hits_total{limit="roadmap_copy_room"} 1' in metrics
    assert 'menteo_limit_hits_total{limit="roadmap_copy_user"} 1' in metrics


# 9: position keys stay short ----------------------------------------------------------


async def test_leapfrogging_moves_rebalance_keys_and_every_view_keeps_the_order(
    fast_server: Running,
) -> None:
    server = fast_server
    room = await _room(server)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    view = ChecklistView(ben.welcome)
    for name in ("a", "b", "x", "y", "z"):
        add = {"type": "checklist.add", "id": f"add-{name}", "item_id": name, "title": name}
        assert (await op(ana, add))["type"] == "ack"
    rebalanced = 0
    frames = []
    for n in range(240):  # x and y take turns right after a: each move halves the gap
        mover = "x" if n % 2 == 0 else "y"
        move = {"type": "checklist.move", "id": f"m{n}", "item_id": mover, "after": "a"}
        assert (await op(ana, move))["type"] == "ack"
    for _ in range(245):
        frame = await ben.recv_until(lambda f: f["type"].startswith("checklist."))
        frames.append(frame)
        view.feed(frame)
        rebalanced += "rebalance" in frame
        assert len(frame.get("pos", frame.get("item", {}).get("pos", ""))) <= 32
    state = await _checklist(server, room["id"])
    assert rebalanced >= 1
    assert max(len(i["pos"]) for i in state["items"]) <= 32
    assert [i["id"] for i in state["items"]] == ["a", "y", "x", "b", "z"]
    assert view.state()["items"] == state["items"]  # the client's rule gives the same list
    web = await _web_client_view(ben.welcome, frames)  # and so does the web client's
    assert web == [[i["id"], i["pos"], i["verified"]] for i in state["items"]]


# 7: removed items are bounded and never loaded -----------------------------------------


async def test_removed_items_are_bounded_and_the_writer_reads_no_rows_per_operation(
    fast_server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fast_server
    state = server.state
    assert state is not None
    monkeypatch.setattr(store, "MAX_REMOVED", 5)  # the bound, small enough to cross
    room = await _room(server)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for n in range(12):
        add = {"type": "checklist.add", "id": f"a{n}", "item_id": f"i{n}", "title": f"t{n}"}
        assert (await op(ana, add))["type"] == "ack"
    for n in range(10):
        remove = {"type": "checklist.remove", "id": f"r{n}", "item_id": f"i{n}"}
        assert (await op(ana, remove))["type"] == "ack"
    for n in range(12):
        move = {"type": "checklist.move", "id": f"m{n}", "item_id": "i11", "after": None}
        assert (await op(ana, move))["type"] == "ack"
    reducer = state.writer.reducers[0]
    assert isinstance(reducer, store.ChecklistReducer)
    assert reducer.reads == 1  # 34 operations, the room's rows read once

    async with state.db.read() as db:
        rows = (
            await db.execute(
                select(TABLE.c.removed, func.count())
                .where(TABLE.c.room_id == room["id"])
                .group_by(TABLE.c.removed)
            )
        ).all()
    assert dict((bool(r), c) for r, c in rows) == {False: 2, True: 5}
    # The five newest removals are still refused; ids removed before them were forgotten.
    again = {"type": "checklist.add", "id": "b9", "item_id": "i9", "title": "again"}
    assert (await op(ana, again))["code"] == "conflict"
    reused = {"type": "checklist.add", "id": "b0", "item_id": "i0", "title": "again"}
    assert (await op(ana, reused))["type"] == "ack"
    late = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert [i["id"] for i in late.welcome["checklist"]["items"]] == ["i11", "i10", "i0"]


async def test_a_checklist_operation_leaves_other_rooms_chat_on_the_fast_path(
    server: Running,
) -> None:
    state = server.state
    assert state is not None and state.db.appender is not None
    appender = state.db.appender
    passed: list[list[str]] = []
    plain = appender.append

    async def recording(items: Any, *rest: Any) -> Any:  # records which streams took the fast path
        passed.append([i.stream for i in items])
        return await plain(items, *rest)

    appender.append = recording  # type: ignore[method-assign]
    noisy, quiet = await _room(server), await _room(server)
    add = {"item_id": "s1", "title": "step"}
    # Queued in one tick: the writer takes them as one batch.
    futures = [
        state.writer.append(NewEvent(noisy["id"], "checklist.add", "ana", "Ana", "c1", add)),
        state.writer.append(
            NewEvent(quiet["id"], "chat.message", "ana", "Ana", "m1", {"body": "hi"})
        ),
        state.writer.append(
            NewEvent(noisy["id"], "chat.message", "ana", "Ana", "m2", {"body": "x"})
        ),
    ]
    results = [await f for f in futures]
    assert [r.event.seq for r in results] == [1, 1, 2]  # each room's order kept
    assert passed == [[quiet["id"]]]  # the quiet room's chat alone took the fast appender
    ana = await RoomClient.connect(server.ws, quiet["id"], server.token("ana", "Ana"))
    assert [m["body"] for m in ana.welcome["history"]] == ["hi"]
