"""The shared roadmap checklist: templates, live operations, verification, audit trail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.checklist_view import ChecklistView
from tests.client import RoomClient
from tests.servers import Running

STEPS = [
    {"title": "SQL joins"},
    {"title": "Window functions", "description": "OVER ()"},
    {"title": "dbt"},
]


async def _roadmap(server: Running) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.post(
            "/api/roadmaps",
            headers=server.service(),
            json={"title": "Become a data engineer", "steps": STEPS},
        )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def op(client: RoomClient, frame: dict[str, Any]) -> dict[str, Any]:
    """Send an operation; return its ack or error."""
    await client.send(frame)
    return await client.recv_until(
        lambda f: f["type"] in ("ack", "error") and f.get("id") == frame["id"]
    )


async def acked(client: RoomClient, frame: dict[str, Any]) -> bool:
    """Send an operation; True once it is acked (an error fails the test, naming it)."""
    answer = await op(client, frame)
    assert answer["type"] == "ack", answer
    return True


def bearer(server: Running, user: str) -> dict[str, str]:
    return {"authorization": "Bearer " + server.token(user)}


async def test_roadmap_copy_becomes_room_events_and_welcome_state(
    server: Running, room: dict[str, Any]
) -> None:
    roadmap = await _roadmap(server)
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert ben.welcome["checklist"] == {
        "items": [],
        "progress": {"done": 0, "verified": 0, "total": 0},
    }
    url = f"/api/rooms/{room['id']}/checklist"
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = (await http.get("/api/roadmaps", headers=bearer(server, "ben"))).json()
        assert [r["id"] for r in listed["roadmaps"]] == [roadmap["id"]]
        refused = await http.post(
            url, json={"roadmap_id": roadmap["id"]}, headers=bearer(server, "ben")
        )
        assert refused.status_code == 403  # the mentee may not
        missing = await http.post(url, json={"roadmap_id": "nope"}, headers=bearer(server, "ana"))
        assert missing.status_code == 404
        copied = await http.post(
            url, json={"roadmap_id": roadmap["id"]}, headers=bearer(server, "ana")
        )
        assert copied.status_code == 201 and copied.json()["added"] == 3
        again = await http.post(url, json={"roadmap_id": roadmap["id"]}, headers=server.service())
        assert again.json()["added"] == 0  # copying twice adds nothing
        state = (await http.get(url, headers=bearer(server, "ben"))).json()
    assert [i["title"] for i in state["items"]] == ["SQL joins", "Window functions", "dbt"]
    assert state["items"][1]["description"] == "OVER ()"
    assert state["progress"] == {"done": 0, "verified": 0, "total": 3}
    frames = [await ben.recv_until(lambda f: f["type"] == "checklist.add") for _ in range(3)]
    assert [f["seq"] for f in frames] == [1, 2, 3]
    assert frames[0]["author"]["user_id"] == "ana"
    late = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert late.welcome["checklist"]["items"] == state["items"]
    assert late.welcome["history"] == []  # history stays chat messages


async def test_live_operations_reach_both_and_match_get(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    views = {"ana": ChecklistView(ana.welcome), "ben": ChecklistView(ben.welcome)}
    ops = [
        (ana, {"type": "checklist.add", "id": "o1", "item_id": "a", "title": "Read the SQL book"}),
        (
            ben,
            {
                "type": "checklist.add",
                "id": "o2",
                "item_id": "b",
                "title": "Joins kata",
                "after": None,
            },
        ),
        (ana, {"type": "checklist.add", "id": "o3", "item_id": "c", "title": "dbt", "position": 1}),
        (ben, {"type": "checklist.toggle", "id": "o4", "item_id": "a", "done": True}),
        (ana, {"type": "checklist.verify", "id": "o5", "item_id": "a"}),
        (
            ben,
            {"type": "checklist.rename", "id": "o6", "item_id": "b", "title": "Joins, all kinds"},
        ),
        (ana, {"type": "checklist.move", "id": "o7", "item_id": "b", "after": "a"}),
        (ben, {"type": "checklist.add", "id": "o8", "item_id": "d", "title": "Oops"}),
        (ben, {"type": "checklist.remove", "id": "o9", "item_id": "d"}),
    ]
    for client, frame in ops:
        assert (await op(client, frame))["type"] == "ack", frame
    for name, client in (("ana", ana), ("ben", ben)):
        for _ in ops:
            views[name].feed(await client.recv_until(lambda f: f["type"].startswith("checklist.")))
    async with httpx.AsyncClient(base_url=server.url) as http:
        server_state = (
            await http.get(f"/api/rooms/{room['id']}/checklist", headers=bearer(server, "ana"))
        ).json()
        history = (
            await http.get(
                f"/api/rooms/{room['id']}/checklist/history", headers=bearer(server, "ben")
            )
        ).json()
    assert (
        views["ana"].state()
        == views["ben"].state()
        == {k: server_state[k] for k in ("items", "progress")}
    )
    items = server_state["items"]
    assert [i["id"] for i in items] == ["c", "a", "b"]
    a = items[1]
    assert a["done"] and a["done_by"] == "ben" and a["verified"] and a["verified_by"] == "ana"
    assert a["done_at"] and a["verified_at"]
    assert server_state["progress"] == {"done": 1, "verified": 1, "total": 3}
    assert [e["type"] for e in history["events"]][:3] == ["checklist.add"] * 3
    assert len(history["events"]) == len(ops) and not history["has_more"]
    assert history["events"][3]["author"] == {"user_id": "ben", "name": "Ben"}


async def test_unticking_clears_verification(server: Running, room: dict[str, Any]) -> None:
    """A step can be verified only once ticked; the verification holds until the step is
    unticked, which clears it. Every answer is checked: the final state alone would also
    hold had the verify failed."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    url = f"/api/rooms/{room['id']}/checklist"

    async def step() -> tuple[bool, bool, str | None]:
        async with httpx.AsyncClient(base_url=server.url) as http:
            item = (await http.get(url, headers=bearer(server, "ana"))).json()["items"][0]
        return item["done"], item["verified"], item["verified_by"]

    assert await acked(ana, {"type": "checklist.add", "id": "x1", "item_id": "s", "title": "Step"})
    refused = await op(ana, {"type": "checklist.verify", "id": "x2", "item_id": "s"})
    assert (refused["type"], refused["code"]) == ("error", "invalid")  # not ticked yet
    assert await step() == (False, False, None)
    assert await acked(ana, {"type": "checklist.toggle", "id": "x3", "item_id": "s", "done": True})
    assert await acked(ana, {"type": "checklist.verify", "id": "x4", "item_id": "s"})
    assert await step() == (True, True, "ana")
    assert await acked(ana, {"type": "checklist.toggle", "id": "x5", "item_id": "s", "done": False})
    assert await step() == (False, False, None)
    verified = await ana.recv_until(lambda f: f["type"] == "checklist.verify")
    assert (verified["item_id"], verified["verified"]) == ("s", True)
    cleared = await ana.recv_until(lambda f: f["type"] == "checklist.toggle" and not f["done"])
    assert cleared["seq"] > verified["seq"]


async def test_titles_and_descriptions_are_bounded_on_both_sides(
    server: Running, room: dict[str, Any]
) -> None:
    """A title of 200 characters and a description of 2000 are taken; one more is refused
    (add and rename alike)."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    add = {"type": "checklist.add", "item_id": "long", "description": "d" * 2000}
    assert await acked(ana, add | {"id": "t1", "title": "t" * 200})
    for frame in (
        add | {"id": "t2", "item_id": "longer", "title": "t" * 201},
        add | {"id": "t3", "item_id": "longer", "title": "t", "description": "d" * 2001},
        {"type": "checklist.rename", "id": "t4", "item_id": "long", "title": "r" * 201},
    ):
        error = await op(ana, frame)
        assert (error["type"], error["code"]) == ("error", "invalid"), frame["id"]
    assert await acked(
        ana, {"type": "checklist.rename", "id": "t5", "item_id": "long", "title": "r" * 200}
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        state = (
            await http.get(f"/api/rooms/{room['id']}/checklist", headers=server.service())
        ).json()
    assert [(i["id"], i["title"], i["description"]) for i in state["items"]] == [
        ("long", "r" * 200, "d" * 2000)
    ]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "checklist.toggle", "id": "e1", "item_id": "ghost", "done": True}, "not_found"),
        ({"type": "checklist.toggle", "id": "e2", "item_id": "gone", "done": True}, "not_found"),
        (
            {"type": "checklist.rename", "id": "e3", "item_id": "keep", "title": "t" * 201},
            "invalid",
        ),
        (
            {"type": "checklist.add", "id": "e4", "item_id": "n", "title": "x", "after": "ghost"},
            "not_found",
        ),
        (
            {"type": "checklist.add", "id": "e5", "item_id": "n", "title": "x", "position": -1},
            "invalid",
        ),
        ({"type": "checklist.add", "id": "e6", "item_id": "keep", "title": "dup"}, "conflict"),
        ({"type": "checklist.move", "id": "e7", "item_id": "keep", "after": "keep"}, "invalid"),
        ({"type": "checklist.move", "id": "e8", "item_id": "keep"}, "invalid"),
        ({"type": "checklist.move", "id": "e9", "item_id": "keep", "after": "gone"}, "not_found"),
        ({"type": "checklist.add", "id": "e10", "item_id": "n", "title": ""}, "invalid"),
        ({"type": "checklist.toggle", "id": "e11", "item_id": "keep", "done": "yes"}, "invalid"),
        ({"type": "checklist.verify", "id": "e12", "item_id": "keep"}, "forbidden"),
    ],
)
async def test_invalid_operations_are_refused_and_change_nothing(
    server: Running, room: dict[str, Any], frame: dict[str, Any], code: str
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    # ben's own step, so that only the frame's fault (not the role table) can refuse it
    assert await acked(
        ben, {"type": "checklist.add", "id": "k", "item_id": "keep", "title": "Keep"}
    )
    assert await acked(
        ana, {"type": "checklist.add", "id": "g", "item_id": "gone", "title": "Gone"}
    )
    assert await acked(ana, {"type": "checklist.remove", "id": "r", "item_id": "gone"})
    url = f"/api/rooms/{room['id']}/checklist"
    async with httpx.AsyncClient(base_url=server.url) as http:
        before = (await http.get(url, headers=server.service())).json()
        error = await op(ben, frame)  # ben is the mentee: he may not verify
        after = (await http.get(url, headers=server.service())).json()
    assert error["type"] == "error" and error["code"] == code, error
    assert before == after


async def test_non_member_cannot_read_or_copy(server: Running, room: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for method, path in (
            ("GET", "/checklist"),
            ("GET", "/checklist/history"),
            ("POST", "/checklist"),
        ):
            resp = await http.request(
                method,
                f"/api/rooms/{room['id']}{path}",
                headers=bearer(server, "eve"),
                json={"roadmap_id": "x"} if method == "POST" else None,
            )
            assert resp.status_code == 403, path


async def test_roadmap_validation(server: Running) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        user = bearer(server, "ana")
        assert (
            await http.post(
                "/api/roadmaps", json={"title": "T", "steps": [{"title": "s"}]}, headers=user
            )
        ).status_code == 403
        for bad in (
            {"title": "T", "steps": []},
            {"title": "T", "steps": [{"title": ""}]},
            {"steps": [{"title": "s"}]},
            {"title": "T", "steps": ["s"]},
        ):
            assert (
                await http.post("/api/roadmaps", json=bad, headers=server.service())
            ).status_code == 400


async def test_add_and_move_accept_the_other_spellings(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert await acked(
        ana, {"type": "checklist.add", "id": "s1", "item": {"id": "one", "title": "One"}}
    )
    # position None: first, as after None; so "two" goes before "one".
    assert await acked(
        ana,
        {"type": "checklist.add", "id": "s2", "item_id": "two", "title": "Two", "position": None},
    )
    assert await acked(
        ana,
        {
            "type": "checklist.add",
            "id": "s3",
            "item_id": "three",
            "title": "Three",
            "position": "two",
        },
    )
    assert await acked(
        ana, {"type": "checklist.move", "id": "s4", "item_id": "one", "after_id": None}
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        state = (
            await http.get(f"/api/rooms/{room['id']}/checklist", headers=server.service())
        ).json()
    assert [i["id"] for i in state["items"]] == ["one", "two", "three"]
    assert state["items"][0]["title"] == "One"
