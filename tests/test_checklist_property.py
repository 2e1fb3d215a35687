"""Property: two members edit one checklist at once from their sockets, with drops and
resumes; every answer, every client's view and the stored list are what docs/protocol.md says.

The expected result is ``menteo_testkit.checklist_model``, written from the document alone
(never from realtime/): the server only chooses the seq order and the commit times. Every
answer must be one the document allows at the operation's place in that order, each
client's view (a welcome's snapshot, then events) must equal the model at every seq it
reaches, and ``GET .../checklist`` must equal it at the end.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from menteo_testkit import checklist_model
from menteo_testkit.checklist_model import EventView, Item, Rules, key_problems, without_keys
from tests.client import RoomClient, create_room
from tests.servers import Running

pytestmark = pytest.mark.slow

ITEMS = ["i0", "i1", "i2", "i3", "i4", "i5"]
TITLES = ["step", "renamed", " ", "x" * 200]  # valid, and often the same: verify compares
title = st.one_of(
    st.sampled_from(TITLES),
    st.sampled_from(TITLES),
    st.text(min_size=1, max_size=8),
    st.sampled_from(["", "y" * 201, "a\x00b"]),  # refused: empty, too long, NUL
)
KINDS = ["add", "add", "toggle", "toggle", "toggle", "rename", "move", "remove", "verify", "verify"]
PLAYERS = ("ana", "ben")  # the mentor and the mentee, as the plan names them


@st.composite
def operation(draw: st.DrawFn, plan: Rules, who: int) -> dict[str, Any]:
    """One operation, aimed by ``plan`` (the list if every operation so far applied in the
    order sent) so that most meet a live item and the rules have something to decide: a
    tick undone, a verified step renamed, a stale title, a second add at one place."""
    live = list(plan.order)
    pick = st.sampled_from(live) if live else st.sampled_from(ITEMS)
    target = draw(st.one_of(pick, pick, pick, st.sampled_from(ITEMS)))
    now = plan.items.get(target, {"done": False, "title": "step"})
    kind = draw(st.sampled_from(KINDS if live else ["add"]))  # an empty list: add first
    if kind == "add":
        fresh = [i for i in ITEMS if i not in live and i not in plan.removed] or ITEMS
        op = {
            "type": "checklist.add",
            "item_id": draw(st.sampled_from(fresh)),
            "title": draw(title),
        }
        anchor = st.one_of(st.none(), pick)
        op |= draw(
            st.one_of(
                st.just({}),  # the end
                st.fixed_dictionaries({"after": anchor}),
                st.fixed_dictionaries({"position": st.one_of(anchor, st.integers(0, 6))}),
            )
        )
        if draw(st.integers(0, 5)) == 0:  # the nested spelling
            op = {
                "type": op["type"],
                "item": {"id": op.pop("item_id"), "title": op.pop("title")},
            } | op
        return op
    if kind == "toggle":
        done = draw(st.sampled_from([not now["done"], not now["done"], now["done"]]))
        return {"type": "checklist.toggle", "item_id": target, "done": done}
    if kind == "rename":
        return {"type": "checklist.rename", "item_id": target, "title": draw(title)}
    if kind == "move":
        spelling = draw(st.sampled_from(["after", "after", "after_id"]))
        return {
            "type": "checklist.move",
            "item_id": target,
            spelling: draw(st.one_of(st.none(), pick)),
        }
    if kind == "remove":
        return {"type": "checklist.remove", "item_id": target}
    op = {"type": "checklist.verify", "item_id": target}
    if draw(st.integers(0, 3)) == 0:
        op["verified"] = draw(st.booleans())
    if draw(st.integers(0, 2)) == 0:
        op["title"] = draw(st.sampled_from([now["title"], now["title"], *TITLES]))
    return op


@st.composite
def scripts(
    draw: st.DrawFn,
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[int, ...]]]:
    """Steps: the mentor's burst and the mentee's, sent at once without waiting for answers;
    then which of them drop (no close frame) and resume."""
    plan, script = Rules(PLAYERS[0]), []
    for _ in range(draw(st.integers(1, 8))):
        bursts: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        for who in draw(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=8)):
            op = draw(operation(plan, who))
            bursts[who].append(op)
            if plan.judge({**op, "id": "x"}, PLAYERS[who]).refusals == frozenset():
                plan.apply(op, PLAYERS[who], "")
        script.append((*bursts, draw(st.sampled_from([(), (0,), (1,), (0, 1)]))))
    return script


RUNS = itertools.count()  # fresh user ids per example: a user's rate limit spans rooms


@dataclass
class Member:
    user: str
    client: RoomClient
    view: EventView
    epoch: str
    seen: dict[int, list[Item]] = field(default_factory=dict)  # seq -> the view's items then


@dataclass
class Run:
    """What the server answered and sent, judged against the model at the end."""

    events: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> the event
    snapshots: list[tuple[str, int, list[Item]]] = field(default_factory=list)  # welcomes
    # Per step: (sender, operation, answer).
    answers: list[list[tuple[str, dict[str, Any], dict[str, Any]]]] = field(default_factory=list)

    def absorb(self, member: Member, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            if not frame["type"].startswith("checklist."):
                continue  # acks, presence: not events (no chat is sent here)
            seq = frame["seq"]
            assert seq <= member.view.seq + 1, f"{member.user}: gap {member.view.seq} -> {seq}"
            assert self.events.setdefault(seq, frame) == frame, f"seq {seq} differs"
            if member.view.feed(frame):
                member.seen[seq] = member.view.state()["items"]


async def connect(server: Running, room_id: str, user: str, run: Run, old: Member | None) -> Member:
    client = await RoomClient.connect(
        server.ws,
        room_id,
        server.token(user),
        since=old.view.seq if old else None,
        epoch=old.epoch if old else None,
    )
    welcome = client.welcome
    run.snapshots.append((user, welcome["seq"], welcome["checklist"]["items"]))
    if old is None:
        view = EventView.from_welcome(welcome)
        member = Member(user, client, view, welcome["epoch"])
        member.seen[view.seq] = view.state()["items"]
        return member
    # since = the last seq seen, epoch kept: the document promises a recovery.
    assert welcome["recovered"] is True and welcome["epoch"] == old.epoch, welcome
    old.client = client
    return old


async def play(server: Running, room_id: str, members: list[Member], run: Run, script: Any) -> None:
    counter = itertools.count()
    for bursts in script:
        ana_ops, ben_ops, drops = bursts
        sent: list[tuple[Member, dict[str, Any]]] = []
        for pair in itertools.zip_longest(ana_ops, ben_ops):  # both sockets at once
            for member, op in zip(members, pair, strict=True):
                if op is not None:
                    frame = {**op, "id": f"{member.user}-{next(counter)}"}
                    await member.client.send(frame)
                    sent.append((member, frame))
        answers = []
        for member, frame in sent:  # every operation is answered: an ack or an error
            answer = await member.client.recv_until(
                lambda f, i=frame["id"]: f.get("id") == i and f["type"] in ("ack", "error")
            )
            answers.append((member.user, frame, answer))
        run.answers.append(answers)
        for _, frame, answer in answers:  # --hypothesis-show-statistics: what was covered
            event(f"{frame['type']}: {answer.get('code', 'ack')}")
        for member in members:
            run.absorb(member, member.client.skipped)
            member.client.skipped.clear()
        for who in drops:  # gone without a close frame; resumes from the last seq it saw
            members[who].client.ws.transport.abort()
            await connect(server, room_id, members[who].user, run, members[who])


def rule(rules: Rules, op: dict[str, Any], anchors: set[object]) -> str:
    """Which documented rule an acked operation exercises (coverage, in the statistics)."""
    kind = op["type"].removeprefix("checklist.")
    item = rules.items.get(op.get("item_id", ""))
    if kind == "add":
        place = op.get("after", op.get("position", "end"))
        seen = place in anchors
        anchors.add(place)
        return "a second add at one place" if seen else "add"
    assert item is not None
    if kind == "toggle" and item["done"] and not op["done"]:
        return "untick a verified step" if item["verified"] else "untick"
    if kind == "rename" and item["verified"]:
        return "rename a verified step" + (" (same title)" if op["title"] == item["title"] else "")
    if kind == "verify" and item["verified"]:
        return "verify a verified step again"
    return kind


def judge(run: Run, mentor: str, start: int) -> dict[int, list[Item]]:
    """Replay the answered operations in seq order through the model; the list it expects
    after each seq."""
    rules, last = Rules(mentor), start
    anchors: set[object] = set()  # the places adds named so far
    expected = {start: rules.state()["items"]}
    for step, answers in enumerate(run.answers):
        acked = sorted((a["seq"], user, op) for user, op, a in answers if a["type"] == "ack")
        refused = [(user, op, a["code"]) for user, op, a in answers if a["type"] == "error"]
        fits = [False] * len(refused)  # refused at some point of this step (any order)

        def look(fits: list[bool] = fits, refused: Any = refused) -> None:
            for n, (user, op, code) in enumerate(refused):
                fits[n] = fits[n] or rules.judge(op, user).allows(code)

        look()
        for seq, user, op in acked:
            assert seq == last + 1, f"step {step}: seq {seq} after {last} (gap or reorder)"
            verdict = rules.judge(op, user)
            assert verdict.allows(None), f"step {step}: {op} acked at {seq}, must be {verdict}"
            stored = run.events[seq]
            assert (stored["type"], stored["id"], stored["author"]["user_id"]) == (
                op["type"],
                op["id"],
                user,
            ), (stored, op)
            event(f"rule: {rule(rules, op, anchors)}")
            rules.apply(op, user, stored["ts"])
            expected[seq], last = rules.state()["items"], seq
            look()
        for (user, op, code), ok in zip(refused, fits, strict=True):
            assert ok, f"step {step}: {op} from {user} refused with {code!r} at every point"
    return expected


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # count: the profile
@given(script=scripts())
async def test_concurrent_edits_follow_the_documented_rules(
    server: Running,
    script: list[tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[int, ...]]],
) -> None:
    n = next(RUNS)
    users = [f"ana{n}", f"ben{n}"]
    room = await create_room(
        server.url, server.service(), [(users[0], "Ana", "mentor"), (users[1], "Ben", "mentee")]
    )
    run = Run()
    members = [await connect(server, room["id"], user, run, None) for user in users]
    try:
        await play(server, room["id"], members, run, script)
        async with httpx.AsyncClient(base_url=server.url) as http:
            resp = await http.get(f"/api/rooms/{room['id']}/checklist", headers=server.service())
        final = resp.json()
        for member in members:  # every event up to the stored list's seq reaches everyone
            while member.view.seq < final["seq"]:
                frame = await member.client.recv_until(lambda f: f["type"].startswith("checklist."))
                run.absorb(member, [frame])
    finally:
        for member in members:
            await member.client.close()

    start = run.snapshots[0][1]  # a new room: an empty list at its first seq
    assert run.snapshots[1][1] == start and run.snapshots[0][2] == [], run.snapshots
    expected = judge(run, users[0], start)
    assert final["seq"] == max(expected), (final["seq"], max(expected))
    seen = {member.user: member.seen for member in members}
    for user, seq, items in run.snapshots:  # each welcome's snapshot, keys included
        matches(items, expected[seq], f"{user}'s welcome at seq {seq}")
        assert items == seen[user][seq], f"{user}'s welcome at seq {seq} != its events"
    for member in members:
        for seq, items in member.seen.items():  # each view at each seq it reached
            matches(items, expected[seq], f"{member.user}'s view at seq {seq}")
        assert member.view.state() == {"items": final["items"], "progress": final["progress"]}
    matches(final["items"], expected[final["seq"]], "GET .../checklist")
    assert final["progress"] == checklist_model.progress(final["items"])


def matches(items: list[Item], expected: list[Item], where: str) -> None:
    """A list the server sent, against the model: keys as the rules say, then the order and
    every field but the key as modelled."""
    assert key_problems(items) == [], f"{where}: {key_problems(items)}"
    order, want = [i["id"] for i in items], [i["id"] for i in expected]
    assert order == want, f"{where}: order {order}, the rules give {want}"
    assert without_keys(items) == expected, where


def test_oracles_never_import_the_server() -> None:
    """The expected results of the property tests come from the documented contract: no
    property test, nor the model, imports ``realtime``."""
    root = Path(__file__).parent.parent
    files = [*root.glob("tests/test_*_property.py"), root / "menteo_testkit/checklist_model.py"]
    files.append(root / "tests/checklist_view.py")
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "realtime" for n in names), path
