"""The end of the run: the database against what clients were acked and what they saw."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
from sim import NotesUser, RoomUser, Sim, canonical, normalize_items


@dataclass
class Verdict:
    rooms: int = 0
    stored: int = 0  # room events in the database (chat and checklist)
    stored_by_type: Counter[str] = field(default_factory=Counter)
    acked: int = 0  # distinct (author, op id) acked to their sender
    refused: int = 0  # ops the rules refused (nothing stored)
    delivered: int = 0  # durable frames received by clients, counted once per client
    expected_deliveries: int = 0  # stored x members
    views_equal: int = 0
    checklists_equal: int = 0
    notes_rooms: int = 0
    notes_equal: int = 0
    notes_words: int = 0
    presence_wrong: int = 0  # clients whose presence view is wrong once all settled
    presence_failures: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        if len(self.failures) < 200:
            self.failures.append(text)
        elif len(self.failures) == 200:
            self.failures.append("... (more failures not listed)")

    @property
    def ok(self) -> bool:
        return not self.failures and not self.presence_wrong


def room_events(rows: list[asyncpg.Record]) -> dict[str, list[tuple[Any, ...]]]:
    rooms: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        raw = orjson.loads(r["data"])
        if r["type"] == "chat.message":  # stored without it; the wire says "user" (protocol.md)
            raw.setdefault("kind", "user")
        data = canonical(raw)
        rooms.setdefault(r["stream"], []).append(
            (r["seq"], r["type"], r["client_id"], r["author_id"], data, r["ts"])
        )
    return rooms


async def last_seqs(pg: asyncpg.Connection, room_ids: list[str]) -> dict[str, int]:
    rows = await pg.fetch("SELECT id, last_seq FROM stream WHERE id = ANY($1)", room_ids)
    return {r["id"]: r["last_seq"] for r in rows}


async def wait_caught_up(pg: asyncpg.Connection, sim: Sim, timeout: float) -> list[str]:
    """Wait until every user has applied its room's last seq; returns those that did not."""
    room_ids = sorted({u.room_id for u in sim.users})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = await last_seqs(pg, room_ids)
        behind = [u for u in sim.users if u.last_seq != last.get(u.room_id)]
        if not behind or loop.time() > deadline:
            return [
                f"{u.user_id} in {u.room_id}: applied {u.last_seq}, room at {last.get(u.room_id)}"
                f" (socket {'open on ' + u.server.name if u.server else 'closed'})"
                for u in behind
            ]
        await asyncio.sleep(0.5)  # a look at the database until the deadline, not a wait


async def wait_presence(sim: Sim, timeout: float) -> list[str]:
    """Once every socket is back and the chaos is over, every client must show both members
    of its room online (docs/protocol.md: a user is online while any socket is open; a dead
    process's users leave within MENTEO_PRESENCE_TTL). Returns the clients that do not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    members: dict[str, set[str]] = {}
    for u in sim.users:
        members.setdefault(u.room_id, set()).add(u.user_id)
    while True:
        wrong = [u for u in sim.users if u.presence != members[u.room_id]]
        if not wrong or loop.time() > deadline:
            return [
                f"{u.user_id} shows {sorted(u.presence)} online in {u.room_id}, "
                f"members {sorted(members[u.room_id])} are connected"
                for u in wrong
            ]
        await asyncio.sleep(1)  # a look at the clients' views until the deadline


async def wait_notes(
    sim: Sim, http: httpx.AsyncClient, headers: dict[str, str], timeout: float
) -> None:
    """Wait until both editors of each notes room are synced and hold the same text as the
    server's REST export (what is stored)."""
    rooms: dict[str, list[NotesUser]] = {}
    for n in sim.notes:
        rooms.setdefault(n.room_id, []).append(n)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = set(rooms)
    while pending and loop.time() < deadline:
        for room_id in list(pending):
            editors = rooms[room_id]
            if not all(e.synced for e in editors):
                continue
            texts = {str(e.text) for e in editors}
            if len(texts) != 1:
                continue
            resp = await http.get(f"/api/rooms/{room_id}/notes", headers=headers)
            if resp.status_code == 200 and resp.json()["text"] in texts:
                pending.discard(room_id)
        await asyncio.sleep(0.5)  # a look at editors and REST until the deadline


async def verify(
    pg: asyncpg.Connection,
    sim: Sim,
    http: httpx.AsyncClient,
    headers: dict[str, str],
) -> Verdict:
    v = Verdict()
    users_by_room: dict[str, list[RoomUser]] = {}
    for u in sim.users:
        users_by_room.setdefault(u.room_id, []).append(u)
    room_ids = sorted(users_by_room)
    v.rooms = len(room_ids)
    rows = await pg.fetch(
        "SELECT stream, seq, type, author_id, client_id, data, ts FROM event"
        " WHERE stream = ANY($1) ORDER BY stream, seq",
        room_ids,
    )
    stored = room_events(rows)
    last = await last_seqs(pg, room_ids)
    stray = await pg.fetchval(
        "SELECT count(*) FROM event WHERE stream NOT LIKE 'notes:%' AND stream <> 'feed'"
        " AND NOT stream = ANY($1)",
        room_ids,
    )
    if stray:
        v.fail(f"{stray} events in streams that are no room of this run")

    for room_id in room_ids:
        events = stored.get(room_id, [])
        v.stored += len(events)
        v.stored_by_type.update(e[1] for e in events)
        seqs = [e[0] for e in events]
        if seqs != list(range(1, last.get(room_id, 0) + 1)):
            v.fail(f"room {room_id}: seqs are not 1..{last.get(room_id)} (got {len(seqs)} events)")
        keys = Counter((e[3], e[2]) for e in events if e[2] is not None)
        for key, count in keys.items():
            if count > 1:
                v.fail(f"room {room_id}: {key} stored {count} times")
        by_key = {(e[3], e[2]): e for e in events}
        acked_keys: set[tuple[str, str]] = set()
        members = users_by_room[room_id]
        for user in members:
            for op_id, seq in user.acks.items():
                acked_keys.add((user.user_id, op_id))
                event = by_key.get((user.user_id, op_id))
                if event is None:
                    v.fail(f"room {room_id}: acked {user.user_id}/{op_id} (seq {seq}) not stored")
                elif event[0] != seq or event[1] != user.kinds.get(op_id):
                    v.fail(
                        f"room {room_id}: {user.user_id}/{op_id} acked as seq {seq}, "
                        f"stored as {event[0]} {event[1]}"
                    )
            for op_id, code in user.refused.items():
                if (user.user_id, op_id) in by_key:
                    v.fail(f"room {room_id}: {user.user_id}/{op_id} refused ({code}) but stored")
            v.refused += len(user.refused)
            for op_id in user.outbox:
                v.fail(f"room {room_id}: {user.user_id}/{op_id} never acked")
        v.acked += len(acked_keys)
        for event in events:
            if (event[3], event[2]) not in acked_keys:
                v.fail(f"room {room_id}: seq {event[0]} ({event[3]}/{event[2]}) stored, not acked")
        for user in members:
            v.delivered += len(user.view)
            v.expected_deliveries += len(events)
            if user.view == events:
                v.views_equal += 1
            else:
                v.fail(
                    f"{user.user_id} in {room_id}: view differs from the database "
                    f"({_first_difference(user.view, events)})"
                )

    # Each client's checklist (derived from the events it received) against the server's.
    sem = asyncio.Semaphore(16)

    async def check_room(room_id: str) -> None:
        async with sem:
            resp = await http.get(f"/api/rooms/{room_id}/checklist", headers=headers)
        if resp.status_code != 200:
            v.fail(f"GET checklist {room_id}: {resp.status_code}")
            return
        server_items = normalize_items(resp.json()["items"])
        for user in users_by_room[room_id]:
            if normalize_items(user.checklist.ordered()) == server_items:
                v.checklists_equal += 1
            else:
                v.fail(f"{user.user_id} in {room_id}: checklist differs from GET .../checklist")

    await asyncio.gather(*(check_room(r) for r in room_ids))
    await check_notes(sim, http, headers, v)
    return v


async def check_notes(
    sim: Sim, http: httpx.AsyncClient, headers: dict[str, str], v: Verdict, *, live: bool = True
) -> None:
    """Every editor's text equals the stored notes, which hold exactly the words typed and
    not deleted. With ``live=False`` (after every socket closed and the server compacted)
    only the stored text is checked against the words."""
    rooms: dict[str, list[NotesUser]] = {}
    for n in sim.notes:
        rooms.setdefault(n.room_id, []).append(n)
    if live:
        v.notes_rooms = len(rooms)
    for room_id, editors in rooms.items():
        resp = await http.get(f"/api/rooms/{room_id}/notes", headers=headers)
        if resp.status_code != 200:
            v.fail(f"GET notes {room_id}: {resp.status_code}")
            continue
        text = resp.json()["text"]
        want = sorted(sim.words_typed[room_id] - sim.words_deleted[room_id])
        got = sorted(text.split())
        label = "" if live else " after every socket closed"
        if got != want:
            missing = sorted(set(want) - set(got))[:5]
            extra = sorted(set(got) - set(want))[:5]
            v.fail(
                f"notes {room_id}{label}: stored words differ: missing {missing}, "
                f"unexpected {extra}, {len(got)} vs {len(want)} words"
            )
        if not live:
            continue
        v.notes_words += len(want)
        if all(str(e.text) == text for e in editors):
            v.notes_equal += 1
        else:
            v.fail(f"notes {room_id}: an editor's text differs from GET .../notes")


def _first_difference(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            fields = ", ".join(
                f"[{k}] {xv!r} vs {yv!r}"
                for k, (xv, yv) in enumerate(zip(x, y, strict=True))
                if xv != yv
            )
            return f"at index {i} ({x[:4]}): client vs database differ in {fields}"
    return f"client has {len(a)} events, database {len(b)}"


@dataclass
class FeedVerdict:
    events: int = 0  # events on the feed stream
    by_type: Counter[str] = field(default_factory=Counter)
    acked_posts: int = 0
    acked_comments: int = 0
    reactions_on: int = 0  # reactions that should exist at the end (per the answers)
    followers: int = 0
    views_equal: int = 0
    counts_equal: int = 0  # followers whose last counts of every post equal the database's
    posts_with_stale_counts: int = 0


async def wait_feed_caught_up(pg: asyncpg.Connection, world: Any, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = await pg.fetchval("SELECT last_seq FROM stream WHERE id = 'feed'")
        behind = [f for f in world.followers if f.last_seq != last]
        if not behind or loop.time() > deadline:
            return [
                f"feed follower {f.user_id} ({'sse' if f.sse else 'ws'}): applied "
                f"{f.last_seq}, feed at {last}"
                for f in behind
            ]
        await asyncio.sleep(0.5)  # a look at the database until the deadline


async def verify_feed(pg: asyncpg.Connection, world: Any, v: Verdict) -> FeedVerdict:
    """The feed stream is gap-free; every acked post and comment is stored once with the seq
    (cursor) it was answered with; the reaction rows are what the answers say; every
    follower saw exactly the stored events and ends with the stored reaction counts."""
    fv = FeedVerdict(followers=len(world.followers))
    rows = await pg.fetch(
        "SELECT stream, seq, type, author_id, client_id, data, ts FROM event"
        " WHERE stream = 'feed' ORDER BY seq"
    )
    events = room_events(rows).get("feed", [])
    last = await pg.fetchval("SELECT last_seq FROM stream WHERE id = 'feed'")
    fv.events = len(events)
    fv.by_type.update(e[1] for e in events)
    if [e[0] for e in events] != list(range(1, (last or 0) + 1)):
        v.fail(f"feed: seqs are not 1..{last} ({len(events)} events)")
    stored: dict[tuple[str, str], list[int]] = {}
    for seq, kind, _, _, data, _ in events:
        body = orjson.loads(data)
        if kind == "feed.post":
            stored.setdefault(("post", body["post"]["id"]), []).append(seq)
        elif kind == "feed.comment":
            stored.setdefault(("comment", body["comment"]["id"]), []).append(seq)
    answered = {(kind, obj_id): cursor for kind, obj_id, cursor in world.acked.values()}
    fv.acked_posts = sum(1 for k in answered if k[0] == "post")
    fv.acked_comments = sum(1 for k in answered if k[0] == "comment")
    for (kind, obj_id), cursor in answered.items():
        seqs = stored.get((kind, obj_id), [])
        if seqs != [cursor]:
            v.fail(f"feed: acked {kind} {obj_id} (cursor {cursor}) stored at seqs {seqs}")
    for key, seqs in stored.items():
        if key not in answered:
            v.fail(f"feed: {key[0]} {key[1]} stored at {seqs} but never acked")
    table_posts = await pg.fetchval("SELECT count(*) FROM post")
    table_comments = await pg.fetchval("SELECT count(*) FROM comment")
    if (table_posts, table_comments) != (fv.acked_posts, fv.acked_comments):
        v.fail(
            f"feed: {table_posts} posts and {table_comments} comments in their tables, "
            f"{fv.acked_posts} and {fv.acked_comments} acked"
        )

    rows = await pg.fetch("SELECT post_id, user_id, kind FROM reaction")
    in_db = {(r["post_id"], r["user_id"], r["kind"]) for r in rows}
    wanted = {k for k, on in world.reactions.items() if on}
    fv.reactions_on = len(wanted)
    if in_db != wanted:
        v.fail(
            f"feed: reaction rows differ from the answers: {len(in_db - wanted)} extra, "
            f"{len(wanted - in_db)} missing"
        )
    counts: dict[str, dict[str, int]] = {}
    for post_id, _, kind in in_db:
        counts.setdefault(
            post_id, dict.fromkeys(("like", "celebrate", "insightful", "support"), 0)
        )[kind] += 1

    stale: dict[str, tuple[dict[str, int], dict[str, int], int]] = {}
    for f in world.followers:
        label = f"feed follower {f.user_id} ({'sse' if f.sse else 'ws'})"
        if f.view == events:
            fv.views_equal += 1
        else:
            v.fail(f"{label}: view differs from the database ({_first_difference(f.view, events)})")
        ok = True
        for post_id, seen in f.counts.items():
            want = counts.get(post_id, dict.fromkeys(seen, 0))
            if seen != want:
                ok = False
                old = stale.get(post_id)
                stale[post_id] = (seen, want, (old[2] if old else 0) + 1)
        fv.counts_equal += ok
    fv.posts_with_stale_counts = len(stale)
    for post_id, (seen, want, n) in list(stale.items())[:10]:
        last_reaction = max(
            (
                e[0]
                for e in events
                if e[1] == "feed.reaction" and orjson.loads(e[4]).get("post_id") == post_id
            ),
            default=None,
        )
        v.fail(
            f"feed: post {post_id}: {n} followers end with counts {seen}, the database has "
            f"{want} (last feed.reaction event of the post: seq {last_reaction})"
        )
    return fv
