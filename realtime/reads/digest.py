"""The "since you left" digest: what other members did in a room after a seq.

Reads at most ``max_events`` events (the room's after ``since``, then the notes updates
after the time of the event at ``since``) and says ``truncated`` when there were more. Your
own actions never count; a later change by anyone undoes an earlier one by others (a step
someone ticked and you unticked is not "done"; a step added and removed while you were away
is neither added nor removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, case, select

from ..persistence.events import EVENT, last_seqs_sync
from ..persistence.models import ChecklistItem, NotesAuthor
from ..persistence.rooms import notes_stream
from .queries import CHAT

ITEMS = ChecklistItem.__table__  # type: ignore[attr-defined]
NOTES_AUTHORS = NotesAuthor.__table__  # type: ignore[attr-defined]
NOTES_UPDATE = "notes.update"


@dataclass(slots=True)
class _Seen:
    """What the events read so far say, for one reader (``me``)."""

    me: str
    messages: int = 0
    first_unread: int | None = None
    authors: dict[str, list[Any]] = field(default_factory=dict)  # user -> [name, count]
    titles: dict[str, str] = field(default_factory=dict)  # the newest title seen per item
    added: dict[str, None] = field(default_factory=dict)  # by others, in order
    gone: set[str] = field(default_factory=set)  # removed by anyone
    removed: dict[str, None] = field(default_factory=dict)  # by others, in order
    done: dict[str, bool] = field(default_factory=dict)  # item -> the last toggle was others'
    verified: dict[str, bool] = field(default_factory=dict)

    def event(self, seq: int, type_: str, author: str, name: str, raw: str | None) -> None:
        other = author != self.me
        if type_ == CHAT:
            if other:
                self.messages += 1
                if self.first_unread is None:
                    self.first_unread = seq
                entry = self.authors.setdefault(author, [name, 0])
                entry[0], entry[1] = name, entry[1] + 1
        elif raw is not None:
            self.checklist(type_.removeprefix("checklist."), orjson.loads(raw), other)

    def checklist(self, op: str, data: dict[str, Any], other: bool) -> None:
        if op == "add":
            item = data["item"]["id"]
            self.titles[item] = data["item"]["title"]
            self.gone.discard(item)
            if other:
                self.added[item] = None
            return
        item = data.get("item_id", "")
        if op == "rename":
            self.titles[item] = data["title"]
            if data.get("verified") is False:  # the mentor's verification covered other words
                self.verified.pop(item, None)
        elif op == "toggle":
            self.done[item] = bool(data["done"]) and other
            if not data["done"]:
                self.verified.pop(item, None)
        elif op == "verify":
            self.verified[item] = bool(data["verified"]) and other
            if data.get("verified_title"):
                self.titles.setdefault(item, data["verified_title"])
        elif op == "remove":
            self.gone.add(item)
            if data.get("title"):
                self.titles.setdefault(item, data["title"])
            if other:
                self.removed[item] = None

    def checklist_lists(self, title: dict[str, str]) -> dict[str, list[str]]:
        live = [i for i in self.added if i not in self.gone]
        return {
            "added": [title[i] for i in live],
            "done": [title[i] for i, mine in self.done.items() if mine and i not in self.gone],
            "verified": [
                title[i] for i, mine in self.verified.items() if mine and i not in self.gone
            ],
            "removed": [title[i] for i in self.removed if i not in self.added],
        }


def digest_sync(
    conn: Connection,
    room_id: str,
    user_id: str,
    since: int,
    max_events: int,
) -> dict[str, Any]:
    """The digest of ``room_id`` for ``user_id`` from ``since`` (clamped to the room's seqs)
    to the room's last seq."""
    last = last_seqs_sync(conn, [room_id]).get(room_id, 0)
    since = max(0, min(since, last))
    checklist_data = case((EVENT.c.type.like("checklist.%"), EVENT.c.data), else_=None)
    rows = list(
        conn.execute(
            select(
                EVENT.c.seq, EVENT.c.type, EVENT.c.author_id, EVENT.c.author_name, checklist_data
            )
            .where(EVENT.c.stream == room_id, EVENT.c.seq > since, EVENT.c.seq <= last)
            .order_by(EVENT.c.seq)
            .limit(max_events + 1)
        )
    )
    truncated = len(rows) > max_events
    seen = _Seen(user_id)
    for seq, type_, author, name, raw in rows[:max_events]:
        seen.event(seq, type_, author, name, raw)
    budget = max_events - min(len(rows), max_events)
    notes_by, notes_truncated = _notes_by(
        conn, room_id, user_id, _since_ts(conn, room_id, since), budget
    )
    by = sorted(seen.authors.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return {
        "room_id": room_id,
        "from_seq": since,
        "to_seq": last,
        "messages": seen.messages,
        "by": [{"user_id": u, "name": n, "messages": c} for u, (n, c) in by],
        "checklist": seen.checklist_lists(_titles(conn, room_id, seen)),
        "notes": {"changed": bool(notes_by), "by": notes_by},
        "first_unread_seq": seen.first_unread,
        "truncated": truncated or notes_truncated,
    }


def _titles(conn: Connection, room_id: str, seen: _Seen) -> dict[str, str]:
    """Every listed item's title: the newest the events told, else the stored one (a removed
    step's row keeps no title: its id stands in when no event told it)."""
    wanted = {*seen.added, *seen.done, *seen.verified, *seen.removed}
    missing = sorted(wanted - set(seen.titles))
    titles = dict(seen.titles)
    if missing:
        rows = conn.execute(
            select(ITEMS.c.item_id, ITEMS.c.title).where(
                ITEMS.c.room_id == room_id, ITEMS.c.item_id.in_(missing)
            )
        )
        titles.update({row.item_id: row.title for row in rows if row.title})
    return {item: titles.get(item, item) for item in wanted}


def _since_ts(conn: Connection, room_id: str, since: int) -> str:
    """When the event at ``since`` was stored ("" for 0: the room's beginning)."""
    if since <= 0:
        return ""
    found = conn.execute(
        select(EVENT.c.ts).where(EVENT.c.stream == room_id, EVENT.c.seq == since)
    ).scalar()
    return str(found or "")


def _notes_by(
    conn: Connection, room_id: str, user_id: str, after: str, budget: int
) -> tuple[list[str], bool]:
    """Who else stored a notes update after ``after`` (an ISO time): the stored updates,
    newest first, read up to ``budget``; and the authors of updates a compaction dropped
    (``notes_author``). True when more updates than the budget were newer."""
    authors: set[str] = set()
    rows = conn.execute(
        select(EVENT.c.author_id, EVENT.c.ts)
        .where(EVENT.c.stream == notes_stream(room_id), EVENT.c.type == NOTES_UPDATE)
        .order_by(EVENT.c.seq.desc())
        .limit(budget + 1)
    )
    truncated = False
    for read, (author, ts) in enumerate(rows):
        if ts <= after:
            break
        if read == budget:  # one more than the budget was newer
            truncated = True
            break
        if author != user_id:
            authors.add(author)
    dropped = conn.execute(
        select(NOTES_AUTHORS.c.user_id).where(
            NOTES_AUTHORS.c.room_id == room_id,
            NOTES_AUTHORS.c.last_ts > after,
            NOTES_AUTHORS.c.user_id != user_id,
        )
    )
    authors.update(row.user_id for row in dropped)
    return sorted(authors), truncated
