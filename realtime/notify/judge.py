"""What a pending notification becomes at its due time, read from the database in one go:
cancelled (read, gone), postponed (one was sent within ``MENTEO_NOTIFY_INTERVAL`` and the
user has not read past it), or sent with this body."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, text

from ..feed.serialize import comment_json
from ..persistence.events import row_to_event
from ..reads.queries import CHAT, marker_sync, unread_sync
from .outbox import ROOM_UNREAD, Row, last_sent_sync


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # "cancel", "postpone" or "send"
    reason: str = ""
    at: float = 0.0  # postpone: the new due time
    body: str = ""  # send: the JSON body, frozen for every attempt
    seq: int = 0  # send: the newest message the body covers (the row's ``last_seq`` from then)


_MEMBER = text("SELECT 1 FROM member WHERE room_id = :room AND user_id = :user")
_TITLE = text("SELECT title FROM room WHERE id = :room")
_FIRST = text(
    "SELECT min(seq) FROM event WHERE stream = :room AND type = 'chat.message' "
    "AND seq > :after AND author_id <> :user"
)
_LAST = text(
    "SELECT stream, seq, type, author_id, author_name, client_id, data, ts FROM event "
    "WHERE stream = :room AND type = :chat AND seq > :after AND author_id <> :user "
    "ORDER BY seq DESC LIMIT 1"
)
_EVENT = text(
    "SELECT stream, seq, type, author_id, author_name, client_id, data, ts FROM event "
    "WHERE stream = :room AND seq = :seq"
)
_COMMENT_NOW = text(
    "SELECT id, post_id, feed_seq, author_id, author_name, body, created_at FROM comment "
    "WHERE id = :id"
)
_POST = text("SELECT author_id, thread_id, deleted FROM post WHERE id = :post")
_COMMENT = text(
    "SELECT id, post_id, feed_seq, author_id, author_name, body, created_at FROM comment "
    "WHERE post_id = :post AND author_id <> :user AND feed_seq <= :seq "
    "ORDER BY feed_seq DESC LIMIT 1"
)


def judge_sync(conn: Connection, row: Row, now: float, interval: float) -> Verdict:
    sent = last_sent_sync(conn, row.user_id, row.scope, now - interval)
    # (when the next one may go, what the last one covered)
    recent = None if sent is None else (sent[0] + interval, sent[1])
    if row.type == ROOM_UNREAD:
        return _room(conn, row, recent)
    return _comment(conn, row, recent)


def _room(conn: Connection, row: Row, recent: tuple[float, int] | None) -> Verdict:
    room, user = row.room_id or "", row.user_id
    if conn.execute(_MEMBER, {"room": room, "user": user}).first() is None:
        return Verdict("cancel", "not a member")
    marker = marker_sync(conn, room, user)
    # What is unread is read here, not from the row's ``last_seq``: a fold may still be on
    # its way to the row (scheduler.py holds them), and the body says what is stored.
    last = conn.execute(_LAST, {"room": room, "chat": CHAT, "after": marker, "user": user}).first()
    if last is None:
        return Verdict("cancel", "read")
    if recent is not None and marker < recent[1]:
        return Verdict("postpone", "interval", at=recent[0])
    unread = unread_sync(conn, room, user, marker)
    if unread == 0:
        return Verdict("cancel", "nothing unread")
    first = conn.execute(_FIRST, {"room": room, "after": marker, "user": user}).scalar()
    title = conn.execute(_TITLE, {"room": room}).scalar()
    body = {
        "id": row.id,
        "type": row.type,
        "user_id": user,
        "room": {"id": room, "title": title or ""},
        "unread": unread,
        "first_unread_seq": int(first or last.seq),
        "last_message": row_to_event(last).frame(),
        "created_at": row.created_at,
    }
    return Verdict("send", body=orjson.dumps(body).decode(), seq=max(row.last_seq, last.seq))


def _comment(conn: Connection, row: Row, recent: tuple[float, int] | None) -> Verdict:
    post = conn.execute(_POST, {"post": row.post_id}).first()
    if post is None or post.deleted:
        return Verdict("cancel", "post deleted")
    if recent is not None:
        return Verdict("postpone", "interval", at=recent[0])
    params = {"post": row.post_id, "user": row.user_id, "seq": row.last_seq}
    comment = conn.execute(_COMMENT, params).first()
    if comment is None:
        return Verdict("cancel", "comment deleted")
    body = {
        "id": row.id,
        "type": row.type,
        "user_id": row.user_id,
        "post_id": row.post_id,
        "thread_id": post.thread_id,
        "comment": comment_json(comment._mapping),
        "created_at": row.created_at,
    }
    return Verdict("send", body=orjson.dumps(body).decode(), seq=row.last_seq)


def refreshed_sync(conn: Connection, row: Row) -> str | None:
    """A frozen body (a retry's, or a row left ready by a restart) with its message or
    comment as it is now, when it was edited or deleted since: a delete erases the words,
    and a retry must not send them. None when nothing changed."""
    if row.body is None:
        return None
    body = orjson.loads(row.body)
    if row.type == ROOM_UNREAD:
        shown = body.get("last_message") or {}
        found = conn.execute(_EVENT, {"room": row.room_id, "seq": shown.get("seq")}).first()
        if found is None:
            return None
        now = row_to_event(found).frame()
        if now == shown:
            return None
        body["last_message"] = now
    else:
        shown = body.get("comment") or {}
        found = conn.execute(_COMMENT_NOW, {"id": shown.get("id")}).first()
        gone = {"id": shown.get("id"), "post_id": row.post_id, "deleted": True}
        current = comment_json(found._mapping) if found is not None else gone
        if current == shown:
            return None
        body["comment"] = current
    return orjson.dumps(body).decode()
