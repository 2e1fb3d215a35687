"""The role table of the roadmap (docs/protocol.md, "Roles on the roadmap"), operation by
operation, for the mentor, the mentee and a service token, on a real server and sockets.

The mentor curates the path and the mentee works it: a mentee ticks and unticks, adds steps,
and renames, moves or removes only the steps he added; unticking a verified step, and
removing or renaming a step the mentor added or verified, are the mentor's. A service token
curates like the mentor, but neither verifies nor undoes a verification.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from alembic import command
from sqlalchemy import text

from realtime.checklist import roles
from realtime.checklist.model import Item
from realtime.persistence.database import Database, alembic_config
from tests.backends import Backend
from tests.ci import skip_or_fail
from tests.client import RoomClient
from tests.servers import Running

MENTOR, MENTEE, SERVICE = "mentor", "mentee", "service"
ACTORS = {
    MENTOR: ("ana", "Ana", None),
    MENTEE: ("ben", "Ben", None),
    SERVICE: ("backend", "Backend", "service"),
}


@dataclass(frozen=True)
class Row:
    """One operation on a step in one state, and who may do it."""

    op: str  # the frame type's tail; "unverify" is a verify with verified: false
    owner: str | None  # who added the step: mentor, mentee, service (a roadmap copy); None: no step
    state: str  # "open", "ticked" or "verified"
    allowed: frozenset[str]


def row(op: str, owner: str | None, state: str, *allowed: str) -> Row:
    return Row(op, owner, state, frozenset(allowed))


CLIENT_JS = Path(__file__).resolve().parent.parent / "web" / "js" / "checklist.js"
EVERYONE = (MENTOR, MENTEE, SERVICE)
TABLE = [
    row("add", None, "open", *EVERYONE),
    row("tick", MENTOR, "open", *EVERYONE),
    row("tick", SERVICE, "open", *EVERYONE),
    row("untick", MENTOR, "ticked", *EVERYONE),
    row("untick", MENTEE, "verified", MENTOR),
    row("rename", MENTEE, "open", *EVERYONE),
    row("rename", MENTOR, "open", MENTOR, SERVICE),
    row("rename", SERVICE, "open", MENTOR, SERVICE),
    row("rename", MENTEE, "verified", MENTOR),
    row("rename", MENTOR, "verified", MENTOR),
    row("move", MENTEE, "open", *EVERYONE),
    row("move", MENTEE, "verified", *EVERYONE),
    row("move", MENTOR, "open", MENTOR, SERVICE),
    row("move", SERVICE, "open", MENTOR, SERVICE),
    row("remove", MENTEE, "open", *EVERYONE),
    row("remove", MENTOR, "open", MENTOR, SERVICE),
    row("remove", SERVICE, "open", MENTOR, SERVICE),
    row("remove", MENTEE, "verified", MENTOR),
    row("verify", MENTEE, "ticked", MENTOR),
    row("unverify", MENTEE, "verified", MENTOR),
]


def _frame(r: Row, n: int, step: str | None) -> dict[str, Any]:
    base = {"id": f"op-{n}", "item_id": step}
    if r.op == "add":
        return {"type": "checklist.add", "id": f"op-{n}", "item_id": f"new-{n}", "title": "New"}
    if r.op in ("tick", "untick"):
        return base | {"type": "checklist.toggle", "done": r.op == "tick"}
    if r.op == "rename":
        return base | {"type": "checklist.rename", "title": f"Renamed {n}"}
    if r.op == "move":
        return base | {"type": "checklist.move", "after": None}
    if r.op == "remove":
        return base | {"type": "checklist.remove"}
    return base | {"type": "checklist.verify", "verified": r.op == "verify"}


async def _ok(client: RoomClient, frame: dict[str, Any]) -> dict[str, Any]:
    await client.send(frame)
    got = await client.recv_until(
        lambda f: f["type"] in ("ack", "error") and f.get("id") == frame["id"]
    )
    return got


async def _copy_roadmap(server: Running, room_id: str, steps: int) -> list[str]:
    """The service's steps: a roadmap copied by the service token (the REST path)."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        roadmap = await http.post(
            "/api/roadmaps",
            headers=server.service(),
            json={"title": "Path", "steps": [{"title": f"Step {i}"} for i in range(steps)]},
        )
        copied = await http.post(
            f"/api/rooms/{room_id}/checklist",
            headers=server.service(),
            json={"roadmap_id": roadmap.json()["id"]},
        )
    assert copied.status_code == 201 and copied.json()["added"] == steps, copied.text
    return [i["id"] for i in copied.json()["checklist"]["items"] if i["id"].startswith("roadmap:")]


async def _items(server: Running, room_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get(f"/api/rooms/{room_id}/checklist", headers=server.service())
    return {i["id"]: i for i in resp.json()["items"]}


async def _prepare(clients: dict[str, RoomClient], r: Row, n: int, copied: list[str]) -> str | None:
    """The row's step, added by its owner and brought to its state (ticked by the mentee,
    verified by the mentor)."""
    if r.owner is None:
        return None
    if r.owner == SERVICE:
        step = copied.pop()
    else:
        step = f"step-{n}"
        add = {"type": "checklist.add", "id": f"add-{n}", "item_id": step, "title": f"S{n}"}
        assert (await _ok(clients[r.owner], add))["type"] == "ack"
    if r.state in ("ticked", "verified"):
        tick = {"type": "checklist.toggle", "id": f"tick-{n}", "item_id": step, "done": True}
        assert (await _ok(clients[MENTEE], tick))["type"] == "ack"
    if r.state == "verified":
        verify = {"type": "checklist.verify", "id": f"verify-{n}", "item_id": step}
        assert (await _ok(clients[MENTOR], verify))["type"] == "ack"
    return step


@pytest.mark.parametrize("actor", [MENTOR, MENTEE, SERVICE])
async def test_the_role_table(server: Running, room: dict[str, Any], actor: str) -> None:
    clients = {
        role: await RoomClient.connect(
            server.ws, room["id"], server.token(user, name, **({"role": kind} if kind else {}))
        )
        for role, (user, name, kind) in ACTORS.items()
    }
    assert clients[actor].welcome["you"]["role"] == actor
    copied = await _copy_roadmap(server, room["id"], sum(r.owner == SERVICE for r in TABLE))
    wrong: list[str] = []
    for n, r in enumerate(TABLE):
        step = await _prepare(clients, r, n, copied)
        before = await _items(server, room["id"])
        answer = await _ok(clients[actor], _frame(r, n, step))
        may = actor in r.allowed
        if may and answer["type"] != "ack":
            wrong.append(f"{r}: refused to the {actor}: {answer}")
        elif not may:
            if (answer["type"], answer.get("code")) != ("error", "forbidden"):
                wrong.append(f"{r}: the {actor} got {answer}, not error forbidden")
            elif await _items(server, room["id"]) != before:
                wrong.append(f"{r}: refused to the {actor}, but the list changed")
    assert not wrong, "\n".join(wrong)


async def test_a_role_applies_as_the_members_are_at_commit_time(
    server: Running, room: dict[str, Any]
) -> None:
    """The reducer reads the members with every batch: a role changed (or a member removed)
    while a socket is open applies to its next operation."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    add = {"type": "checklist.add", "id": "a1", "item_id": "s1", "title": "Mentor's"}
    assert (await _ok(ana, add))["type"] == "ack"
    rename = {"type": "checklist.rename", "id": "r1", "item_id": "s1", "title": "Ben's now"}
    assert (await _ok(ben, rename))["code"] == "forbidden"
    assert server.state is not None

    async def set_member(sql: str) -> None:
        assert server.state is not None
        async with server.state.db.write() as db:
            await db.execute(text(sql), {"room": room["id"]})

    await set_member("UPDATE member SET role = 'mentor' WHERE room_id = :room AND user_id = 'ben'")
    assert (await _ok(ben, {**rename, "id": "r2"}))["type"] == "ack"
    await set_member("DELETE FROM member WHERE room_id = :room AND user_id = 'ben'")
    tick = {"type": "checklist.toggle", "id": "t1", "item_id": "s1", "done": True}
    refused = await _ok(ben, tick)
    assert (refused["code"], refused["message"]) == ("forbidden", "not a member of this room")


async def test_added_by_is_in_the_welcome_and_rest_state(
    server: Running, room: dict[str, Any]
) -> None:
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    add = {"type": "checklist.add", "id": "a1", "item_id": "mine", "title": "Ben's"}
    assert (await _ok(ben, add))["type"] == "ack"
    copied = await _copy_roadmap(server, room["id"], 1)
    items = await _items(server, room["id"])
    assert (items["mine"]["added_by"], items[copied[0]]["added_by"]) == ("ben", "backend")
    late = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert [i["added_by"] for i in late.welcome["checklist"]["items"]] == ["ben", "backend"]


async def test_the_migration_fills_in_who_added_each_live_step(backend: Backend) -> None:
    """Steps stored before ``added_by`` existed get the author of their newest add event
    (an id may be added again once its tombstone is forgotten)."""
    db = Database(backend.database_url)
    try:
        async with db.write_engine.connect() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0006"))
            await conn.commit()
        now = "2026-01-01T00:00:00.000Z"
        adds = [("a", "ana"), ("b", "ben"), ("c", "ana"), ("d", "ana"), ("d", "ben")]
        async with db.write() as conn:
            await conn.execute(
                text("INSERT INTO stream (id, last_seq, created_at) VALUES ('r', :n, :t)"),
                {"n": len(adds), "t": now},
            )
            await conn.execute(
                text("INSERT INTO room (id, title, created_at) VALUES ('r', 'R', :t)"), {"t": now}
            )
            for seq, (item, author) in enumerate(adds, 1):
                data = orjson.dumps(
                    {"item": {"id": item, "title": item, "pos": "V"}, "after": None}
                )
                await conn.execute(
                    text(
                        "INSERT INTO event (stream, seq, type, author_id, author_name, client_id,"
                        " data, ts) VALUES ('r', :seq, 'checklist.add', :a, :a, :c, :d, :t)"
                    ),
                    {"seq": seq, "a": author, "c": f"op{seq}", "d": data.decode(), "t": now},
                )
            for item, removed in (("a", False), ("b", False), ("c", True), ("d", False)):
                await conn.execute(
                    text(
                        "INSERT INTO checklist_item (room_id, item_id, title, description, pos,"
                        " done, verified, removed) VALUES ('r', :i, :i, '', 'V', :f, :f, :r)"
                    ),
                    {"i": item, "f": False, "r": removed},
                )
        await db.migrate()
        async with db.read() as conn:
            rows = await conn.execute(text("SELECT item_id, added_by FROM checklist_item"))
            added_by = dict(rows.all())
    finally:
        await db.close()
    assert added_by == {"a": "ana", "b": "ben", "c": None, "d": "ben"}


MAY_JS = """
const { mayDo } = await import(process.argv[1]);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const cases = JSON.parse(input);
console.log(JSON.stringify(cases.map(([me, action, item]) => mayDo(me, action, item))));
"""


def test_the_web_page_offers_what_the_server_allows() -> None:
    """web/js/checklist.js ``mayDo`` (what the page offers) agrees with
    realtime/checklist/roles.py (what the server allows), case by case."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed: the web client's rules cannot run")
    cases: list[tuple[dict[str, str], str, dict[str, Any]]] = []
    expected: list[bool] = []
    for role in (MENTOR, MENTEE, SERVICE):
        for action in ("add", "tick", "untick", "rename", "move", "remove", "verify"):
            for added_by in ("ana", "ben", "backend", None):
                for verified in (False, True):
                    me = {"user_id": "ben" if role == MENTEE else role, "role": role}
                    step = Item("s", "S", "V", added_by=added_by, verified=verified, done=verified)
                    cases.append((me, action, {"added_by": added_by, "verified": verified}))
                    target = None if action == "add" else step
                    expected.append(roles.refusal(role, me["user_id"], action, target) is None)
    out = subprocess.run(
        [node, "--no-warnings", "--input-type=module", "-e", MAY_JS, str(CLIENT_JS)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    got = json.loads(out.stdout)
    differ = [(c, e) for c, e, g in zip(cases, expected, got, strict=True) if e != g]
    assert not differ, f"the page and the server disagree (case, server allows): {differ}"
