"""Revoked tokens: the ``revocation`` table, kept by the ``token.revoked`` events of the
``access`` stream, and each process's copy of it in memory, checked on every token.

A user's revocation refuses every token of the user issued before its moment (``iat``; none
counts as 0), one row per user (moved forward by a later revocation), kept until every token
it covers has expired: its moment plus ``MENTEO_TOKEN_MAX_LIFETIME`` when that is set (tokens
living longer are refused), else for good. A single token's (``jti``) is kept until that
token's ``exp``. Lapsed rows are pruned; the table holds at most ``max_revocations``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..auth import Principal
from ..persistence.events import NewEvent, Rejected
from ..persistence.models import Revocation

TABLE = Revocation.__table__  # type: ignore[attr-defined]
ACCESS_STREAM = "access"  # the one stream of revocations; every process follows it
REVOKED = "token.revoked"
USER, TOKEN = "user", "jti"
TOO_MANY = "too_many_revocations"  # a ``Rejected`` code: the table is full


@dataclass(slots=True)
class Revocations:
    """This process's copy: a user's moment (and when it lapses; 0: never), and the revoked
    token ids with their ``exp``."""

    users: dict[str, tuple[float, float]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    next_prune: int = 1024  # entries held when lapsed ones are dropped next

    def covers(self, principal: Principal) -> bool:
        user = self.users.get(principal.user_id)
        if user is not None and principal.issued_at < user[0]:
            return True
        return principal.token_id is not None and principal.token_id in self.tokens

    def __len__(self) -> int:
        return len(self.users) + len(self.tokens)

    def apply(self, data: dict[str, Any]) -> None:
        """One ``token.revoked`` event's data (or a stored row's, as such)."""
        lapses = float(data.get("expires_at", 0.0))
        if "user_id" in data:
            user_id, before = str(data["user_id"]), float(data["issued_before"])
            held = self.users.get(user_id)
            if held is None or before >= held[0]:
                self.users[user_id] = (before, lapses)
        elif "jti" in data:
            self.tokens[str(data["jti"])] = lapses
        if len(self) >= self.next_prune:
            self.prune(time.time())

    def prune(self, now: float) -> None:
        """Forget what lapsed: the tokens it covers have expired (their ``exp`` refuses them)."""
        self.users = {u: v for u, v in self.users.items() if not 0 < v[1] < now}
        self.tokens = {jti: exp for jti, exp in self.tokens.items() if exp >= now}
        self.next_prune = max(1024, 2 * len(self))


def load_revocations_sync(conn: Connection) -> list[dict[str, Any]]:
    """Every stored revocation still in force, as event data."""
    rows = conn.execute(select(TABLE).where(_live(time.time())))
    return [_as_data(row.kind, row.subject, row.issued_before, row.expires_at) for row in rows]


def _as_data(kind: str, subject: str, before: float, expires: float) -> dict[str, Any]:
    if kind == USER:
        return {"user_id": subject, "issued_before": before, "expires_at": expires}
    return {"jti": subject, "expires_at": expires}


def _live(now: float) -> Any:
    """Rows still in force: kept for good (0), or until a moment not yet passed."""
    return (TABLE.c.expires_at == 0) | (TABLE.c.expires_at >= now)


@dataclass(slots=True)
class _Batch:
    count: int  # rows stored, lapsed ones pruned
    stored: dict[tuple[str, str], dict[str, Any]]  # (kind, subject) -> the row, as event data
    writes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class RevocationReducer:
    """The writer's hook for ``token.revoked``: the row goes in the event's transaction, and
    a full table refuses the event (``too_many_revocations``)."""

    prefix = "token."

    def __init__(self, max_revocations: int) -> None:
        self.max_revocations = max_revocations

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> _Batch:
        return await conn.run_sync(_load, [_key(item.data) for item in items])

    def reduce(self, state: _Batch, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
        key = _key(item.data)
        if key not in state.stored and key not in state.writes:
            if state.count >= self.max_revocations:
                raise Rejected(TOO_MANY, f"{self.max_revocations} revocations are held")
            state.count += 1
        data = dict(item.data)
        held = state.writes.get(key) or state.stored.get(key)
        if key[0] == USER and held is not None and held["issued_before"] > data["issued_before"]:
            data = dict(held)  # a later moment covers more; an earlier one changes nothing
        state.writes[key] = data
        return data

    async def save(self, conn: AsyncConnection, state: _Batch) -> None:
        await conn.run_sync(_save, state)


def _key(data: dict[str, Any]) -> tuple[str, str]:
    return (USER, str(data["user_id"])) if "user_id" in data else (TOKEN, str(data["jti"]))


def _load(conn: Connection, keys: list[tuple[str, str]]) -> _Batch:
    # Lapsed single-token rows go first: the cap counts what is in force.
    conn.execute(delete(TABLE).where(~_live(time.time())))
    count = conn.execute(select(func.count()).select_from(TABLE)).scalar() or 0
    stored: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, subject in set(keys):
        where = and_(TABLE.c.kind == kind, TABLE.c.subject == subject)
        row = conn.execute(select(TABLE).where(where)).first()
        if row is not None:
            stored[(kind, subject)] = _as_data(kind, subject, row.issued_before, row.expires_at)
    return _Batch(int(count), stored)


def _save(conn: Connection, state: _Batch) -> None:
    for (kind, subject), data in state.writes.items():
        values = {
            "issued_before": float(data.get("issued_before", 0.0)),
            "expires_at": float(data.get("expires_at", 0.0)),
        }
        if (kind, subject) in state.stored:
            where = and_(TABLE.c.kind == kind, TABLE.c.subject == subject)
            conn.execute(update(TABLE).where(where).values(**values))
        else:
            conn.execute(insert(TABLE).values(kind=kind, subject=subject, **values))
