"""The ``webhook_outbox`` table's statements: sync functions of a ``Connection``.

A row's life: ``pending`` (inserted after the message's commit; later messages fold into it)
→ at ``next_at`` one process claims it (a lease: ``next_at`` moves past the attempt's
deadline, so a process killed mid-attempt leaves it for another, or for itself after a
restart) → ``cancelled`` (read, present) or ``ready`` with its body frozen → ``done`` on a
2xx, else ``ready`` again after a backoff, or ``failed``. On PostgreSQL the claim is
``FOR UPDATE SKIP LOCKED``: two processes never take the same row. SQLite serves one
process; its write transaction (``BEGIN IMMEDIATE``) is exclusive anyway.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from ..persistence.search_sqlite import SaSql

ROOM_UNREAD = "room.unread"
POST_COMMENT = "post.comment"
PENDING, READY, DONE, FAILED, CANCELLED = "pending", "ready", "done", "failed", "cancelled"
OPEN = (PENDING, READY)
ERROR_CHARS = 500  # of a receiver's answer or an exception, kept as ``last_error``


# What the statements run on: the SQLite appender's own ``sqlite3`` connection (writes take
# turns with the chat appends instead of waiting for the lock), or a SQLAlchemy connection.
Db = Connection | sqlite3.Connection | SaSql


def run(conn: Db, sql: str, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> Any:
    """Execute (``executemany`` for a list); the cursor (``rowcount``, ``fetchall``...)."""
    if isinstance(conn, sqlite3.Connection):
        if isinstance(params, list):
            return conn.executemany(sql, params)
        return conn.execute(sql, params or {})
    sa = conn.conn if isinstance(conn, SaSql) else conn
    return sa.execute(text(sql), params)


def _in(name: str, values: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``(:name0, :name1, ...)`` and its parameters (no backend's list binding needed)."""
    params = {f"{name}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{k}" for k in params) + ")", params


@dataclass(frozen=True, slots=True)
class Intent:
    """A notification someone may need: ``user`` about ``scope`` up to ``seq``."""

    type: str
    user_id: str
    scope: str  # "room:<id>" or "post:<id>"
    seq: int  # the room's seq, or the comment's feed seq
    at: float  # when it was committed (unix seconds): due ``MENTEO_NOTIFY_DELAY`` after
    room_id: str | None = None
    post_id: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    type: str
    user_id: str
    scope: str
    room_id: str | None
    post_id: str | None
    last_seq: int
    state: str
    attempts: int
    body: str | None
    created_at: str


_ENQUEUE = (
    "INSERT INTO webhook_outbox (id, type, user_id, scope, room_id, post_id, last_seq, state, "
    "next_at, attempts, created_at, updated_at) "
    "SELECT CAST(:id AS VARCHAR(32)), CAST(:type AS VARCHAR(32)), CAST(:user AS VARCHAR(128)), "
    "CAST(:scope AS VARCHAR(80)), CAST(:room AS VARCHAR(64)), CAST(:post AS VARCHAR(64)), "
    "CAST(:seq AS BIGINT), 'pending', CAST(:due AS DOUBLE PRECISION), 0, "
    "CAST(:ts AS VARCHAR(40)), CAST(:ts AS VARCHAR(40)) "
    # Already covered (sent, or cancelled by a read): nothing new to say.
    "WHERE NOT EXISTS (SELECT 1 FROM webhook_outbox WHERE user_id = :user AND scope = :scope "
    "AND last_seq >= :seq AND state <> 'pending') "
    "ON CONFLICT (user_id, scope) WHERE state = 'pending' "
    "DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at "
    "WHERE webhook_outbox.last_seq < excluded.last_seq"
)
_MEMBERS = "SELECT room_id, user_id FROM member WHERE room_id IN "
_AUTHORS = "SELECT id, author_id FROM post WHERE id IN "
_COLUMNS = "id, type, user_id, scope, room_id, post_id, last_seq, state, attempts, body, created_at"
_DUE = (
    f"SELECT {_COLUMNS} FROM webhook_outbox WHERE state IN ('pending', 'ready') "
    "AND next_at <= :now ORDER BY next_at LIMIT :n"
)
_LEASE = "UPDATE webhook_outbox SET next_at = :lease WHERE id = :id"


def room_intents(conn: Db, messages: Sequence[tuple[str, int, str, float]]) -> list[Intent]:
    """``(room, seq, author, commit time)`` of chat messages → one intent per other
    member."""
    rooms = sorted({room for room, _, _, _ in messages})
    if not rooms:
        return []
    members: dict[str, list[str]] = {}
    listed, params = _in("r", rooms)
    for room, user in run(conn, _MEMBERS + listed, params).fetchall():
        members.setdefault(room, []).append(user)
    # A busy room has many messages per write: fold them per room first (one intent per
    # member, not one per member and message). For a member, the newest and the earliest
    # message not their own: the room's, or else the best by another author.
    newest: dict[str, list[tuple[int, str]]] = {}
    earliest: dict[str, list[tuple[float, str]]] = {}
    for room, seq, author, at in messages:
        _keep(newest.setdefault(room, []), (seq, author), max)
        _keep(earliest.setdefault(room, []), (at, author), min)
    intents = []
    for room, users in members.items():
        for user in users:
            last = next((v for v, a in newest.get(room, ()) if a != user), None)
            first = next((v for v, a in earliest.get(room, ()) if a != user), None)
            if last is not None and first is not None:
                scope = f"room:{room}"
                intents.append(Intent(ROOM_UNREAD, user, scope, last, first, room_id=room))
    return intents


def _keep(best: list[tuple[Any, str]], item: tuple[Any, str], pick: Any) -> None:
    """``best``: at most two (value, author), best first, of two different authors."""
    for i, (value, author) in enumerate(best):
        if author == item[1]:
            if pick(value, item[0]) != value:
                best[i] = item
            break
    else:
        best.append(item)
    best.sort(key=lambda pair: pair[0], reverse=pick is max)
    del best[2:]


def comment_intents(conn: Db, comments: Sequence[tuple[str, int, str, float]]) -> list[Intent]:
    """``(post, feed seq, commenter, commit time)`` → an intent for the post's author (not
    for their own comments)."""
    posts = sorted({post for post, _, _, _ in comments})
    if not posts:
        return []
    listed, params = _in("p", posts)
    authors = {post: author for post, author in run(conn, _AUTHORS + listed, params).fetchall()}
    return [
        Intent(POST_COMMENT, authors[post], f"post:{post}", seq, at, post_id=post)
        for post, seq, commenter, at in comments
        if post in authors and authors[post] != commenter
    ]


def enqueue_sync(conn: Db, intents: Sequence[Intent], delay: float, ts: str) -> float:
    """Insert or fold each intent (one pending row per user and scope), in a stable order
    so two processes' transactions take the unique index's locks alike. A new row is due
    ``delay`` after the earliest of its messages; a fold keeps the row's due time. Returns
    the earliest due time (inf: none)."""
    newest: dict[tuple[str, str], Intent] = {}
    first: dict[tuple[str, str], float] = {}
    for intent in intents:
        key = (intent.user_id, intent.scope)
        if key not in newest or newest[key].seq < intent.seq:
            newest[key] = intent
        first[key] = min(first.get(key, intent.at), intent.at)
    rows = [
        {
            "id": uuid.uuid4().hex,
            "type": i.type,
            "user": i.user_id,
            "scope": i.scope,
            "room": i.room_id,
            "post": i.post_id,
            "seq": i.seq,
            "due": first[key] + delay,
            "ts": ts,
        }
        for key, i in sorted(newest.items())
    ]
    if rows:
        run(conn, _ENQUEUE, rows)  # one executemany: a trip per batch, not per row
    return min((first[key] + delay for key in newest), default=float("inf"))


def claim_sync(conn: Db, now: float, n: int, lease: float, locking: bool) -> list[Row]:
    """Up to ``n`` rows due now, leased until ``lease`` (in the caller's transaction)."""
    sql = _DUE + (" FOR UPDATE SKIP LOCKED" if locking else "")
    rows = [Row(*r) for r in run(conn, sql, {"now": now, "n": n}).fetchall()]
    if rows:
        run(conn, _LEASE, [{"lease": lease, "id": r.id} for r in rows])
    return rows


_CANCEL = (
    "UPDATE webhook_outbox SET state = 'cancelled', next_at = :now, updated_at = :ts "
    "WHERE id = :id AND state = 'pending' AND last_seq = :seq"
)
_POSTPONE = "UPDATE webhook_outbox SET next_at = :at WHERE id = :id AND state = 'pending'"
_FREEZE = (
    "UPDATE webhook_outbox SET state = 'ready', body = :body, sent_at = :now, next_at = :lease, "
    "updated_at = :ts, last_seq = :covered "
    "WHERE id = :id AND state = 'pending' AND last_seq = :seq"
)
# A settled row (done, failed) keeps no body: the words it carried may be deleted or edited
# later, and the database must not keep them (docs/security.md, erasure).
_ATTEMPTED = (
    "UPDATE webhook_outbox SET state = :state, attempts = attempts + 1, next_at = :at, "
    "last_error = :error, updated_at = :ts, "
    "body = CASE WHEN :keep THEN body ELSE NULL END "
    "WHERE id = :id AND state = 'ready'"
)


_RETRY_SOON = "UPDATE webhook_outbox SET next_at = :now WHERE id = :id AND state = 'pending'"


def cancel_many_sync(conn: Db, rows: Sequence[Row], now: float, ts: str) -> None:
    """``cancel_sync`` for many rows in two statements: the ones a message folded into
    meanwhile stay pending and are due again now."""
    if not rows:
        return
    run(conn, _CANCEL, [{"id": r.id, "seq": r.last_seq, "now": now, "ts": ts} for r in rows])
    run(conn, _RETRY_SOON, [{"now": now, "id": r.id} for r in rows])


def cancel_sync(conn: Db, row: Row, now: float, ts: str) -> bool:
    """False when a message folded in meanwhile: the row is judged again."""
    done = run(conn, _CANCEL, {"id": row.id, "seq": row.last_seq, "now": now, "ts": ts})
    if done.rowcount == 0:
        run(conn, _POSTPONE, {"id": row.id, "at": now})
    return bool(done.rowcount)


_REBODY = "UPDATE webhook_outbox SET body = :body WHERE id = :id AND state = 'ready'"


def rebody_sync(conn: Db, bodies: dict[str, str]) -> None:
    """Ready rows' bodies replaced (their message edited or deleted since they froze)."""
    run(conn, _REBODY, [{"id": k, "body": v} for k, v in sorted(bodies.items())])


_RENEW = "UPDATE webhook_outbox SET next_at = :new WHERE id = :id AND next_at = :old"


def renew_sync(conn: Db, old: dict[str, float], new: dict[str, float]) -> None:
    """Each row's lease from ``old`` to ``new``, where ``next_at`` is still ``old``."""
    run(conn, _RENEW, [{"id": k, "old": v, "new": new[k]} for k, v in sorted(old.items())])


def postpone_sync(conn: Db, row: Row, at: float) -> None:
    run(conn, _POSTPONE, {"id": row.id, "at": at})


def freeze_sync(
    conn: Db, row: Row, body: str, covered: int, now: float, ts: str, lease: float
) -> bool:
    """Pending → ready with its body (which covers messages up to ``covered``: a fold of
    one of them written later is already said), leased anew for the first attempt (which
    follows at once); False when a message folded in meanwhile (the row is judged again)."""
    params = {
        "id": row.id,
        "seq": row.last_seq,
        "covered": covered,
        "body": body,
        "now": now,
        "ts": ts,
        "lease": lease,
    }
    done = run(conn, _FREEZE, params)
    if done.rowcount == 0:
        run(conn, _POSTPONE, {"id": row.id, "at": now})
    return bool(done.rowcount)


def attempted_sync(
    conn: Db, row_id: str, state: str, at: float, error: str | None, ts: str
) -> None:
    """One attempt's outcome: ``done``, ``failed``, or ``ready`` again at ``at``."""
    if error is not None:
        error = error[:ERROR_CHARS]
    params = {"id": row_id, "state": state, "at": at, "error": error, "ts": ts}
    run(conn, _ATTEMPTED, params | {"keep": state == READY})


_RECENT = (
    "SELECT sent_at, last_seq FROM webhook_outbox WHERE user_id = :user AND scope = :scope "
    "AND state IN ('ready', 'done') AND sent_at > :since ORDER BY sent_at DESC LIMIT 1"
)


def last_sent_sync(conn: Db, user_id: str, scope: str, since: float) -> tuple[float, int] | None:
    """The newest notification sent for this user and scope after ``since``."""
    found = run(conn, _RECENT, {"user": user_id, "scope": scope, "since": since}).fetchone()
    return None if found is None else (float(found[0]), int(found[1]))


_COUNT = "SELECT count(*) FROM webhook_outbox WHERE state IN ('pending', 'ready')"
_FAILED = (
    "SELECT id, type, user_id, attempts, last_error, created_at, updated_at "
    "FROM webhook_outbox WHERE state = 'failed' ORDER BY updated_at DESC, id LIMIT :n"
)
_PURGE = (
    "DELETE FROM webhook_outbox WHERE (state IN ('done', 'cancelled') AND next_at < :before) "
    "OR (state = 'failed' AND next_at < :failed_before)"
)
FAILED_KEEP = 30 * 86_400.0  # failed rows stay listed (GET /api/webhooks/failed) this long


def pending_sync(conn: Db) -> int:
    return int(run(conn, _COUNT).fetchone()[0] or 0)


def failed_sync(conn: Db, n: int) -> list[dict[str, Any]]:
    """The newest failed notifications, with their last error (``GET
    /api/webhooks/failed``)."""
    return [
        {
            "id": r[0],
            "type": r[1],
            "user_id": r[2],
            "attempts": r[3],
            "last_error": r[4],
            "created_at": r[5],
            "failed_at": r[6],
        }
        for r in run(conn, _FAILED, {"n": n}).fetchall()
    ]


def purge_sync(conn: Db, before: float, now: float) -> int:
    """Completed rows older than ``before`` (kept until then for folding and the interval),
    failed ones after ``FAILED_KEEP``."""
    params = {"before": before, "failed_before": now - FAILED_KEEP}
    return int(run(conn, _PURGE, params).rowcount or 0)


# On start: chat messages and comments committed in the last RECOVER_WINDOW seconds that no
# outbox row covers yet (a process killed -9 between a commit and its outbox write, or with
# folds held). Writing them again is harmless: a row that covers a message (sent, cancelled,
# or pending with it folded in) makes its intent a no-op.
RECOVER_WINDOW = 600.0
RECOVER_ROOMS = 10_000  # rooms looked at, at most
RECOVER_PER_ROOM = 50  # newest messages per room (a room's intents fold anyway)
RECOVER_COMMENTS = 1_000
# Only rooms whose newest message is recent and uncovered count against RECOVER_ROOMS:
# rooms behind for good (their messages older than the window: from before the webhook, or
# a lone member's) would otherwise take the places of the rooms the scan is for.
_BEHIND = (
    "SELECT b.id, b.after FROM (SELECT s.id AS id, coalesce(max(o.last_seq), 0) AS after "
    "FROM stream s JOIN room r ON r.id = s.id "
    "LEFT JOIN webhook_outbox o ON o.room_id = s.id AND o.type = 'room.unread' "
    "GROUP BY s.id, s.last_seq HAVING s.last_seq > coalesce(max(o.last_seq), 0)) b "
    "JOIN event e ON e.stream = b.id AND e.seq = (SELECT max(m.seq) FROM event m "
    "WHERE m.stream = b.id AND m.type = 'chat.message') "
    "WHERE e.seq > b.after AND e.ts >= :since ORDER BY b.id LIMIT :n"
)
# The newest first, bounded, the window applied here: a ``ts`` condition in SQL is no
# index's, and a room (or the feed) with no row yet had its whole history read for it.
_RECENT_MESSAGES = (
    "SELECT seq, author_id, ts FROM event WHERE stream = :room AND type = 'chat.message' "
    "AND seq > :after ORDER BY seq DESC LIMIT :n"
)
_COMMENTS_COVERED = "SELECT coalesce(max(last_seq), 0) FROM webhook_outbox WHERE type = :type"
_RECENT_COMMENTS = (
    "SELECT seq, author_id, data, ts FROM event WHERE stream = 'feed' AND type = 'feed.comment' "
    "AND seq > :after ORDER BY seq DESC LIMIT :n"
)

Committed = tuple[str, int, str, float]  # (room or post, seq, author, commit time)


def _unix(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def uncovered_sync(conn: Db, since: str) -> tuple[list[Committed], list[Committed]]:
    """Messages and comments committed since ``since`` (ISO) that may have no outbox row,
    as ``Notifier.committed`` records them."""
    messages: list[Committed] = []
    for room, after in run(conn, _BEHIND, {"n": RECOVER_ROOMS, "since": since}).fetchall():
        params = {"room": room, "after": after, "n": RECOVER_PER_ROOM}
        for seq, author, ts in run(conn, _RECENT_MESSAGES, params).fetchall():
            if ts >= since:
                messages.append((room, int(seq), author, _unix(ts)))
    after = run(conn, _COMMENTS_COVERED, {"type": POST_COMMENT}).fetchone()[0]
    comments: list[Committed] = []
    params = {"after": after, "n": RECOVER_COMMENTS}
    for seq, author, data, ts in run(conn, _RECENT_COMMENTS, params).fetchall():
        post = orjson.loads(data).get("post_id") if ts >= since else None
        if post:
            comments.append((str(post), int(seq), author, _unix(ts)))
    return messages, comments
