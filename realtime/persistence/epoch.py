"""The database's epoch, its name in every resume point, and the rules that change it.

A client resumes with ``since=SEQ&epoch=E``; the server honours the seq only in the epoch it
came from. A database that is restored from a backup goes back in time: the events after
the backup are gone, and the seqs they had are given again to new events. If the epoch
stayed, a client that saw the lost events would resume past the new ones and never see
them (a silent gap). So a restored database takes a new epoch on its first start, and every
older resume point gets ``recovered: false`` and the history instead.

The server can tell a restore in two cases by itself; ``menteo-realtime new-epoch`` covers
every other (docs/deploy.md, "Backup and restore"):

- a copy made by ``menteo-realtime backup`` carries a ``restore`` row: the first start
  of that copy, wherever it is, takes a new epoch and deletes the row;
- on PostgreSQL the epoch row is stored with the ``home`` it was made in (the cluster's
  system identifier and the database's oid): a dump restored into another database, or
  another cluster, no longer matches, and the start takes a new epoch.

Everything here runs with the schema lock held (``Database.prepare``), so processes that
start together settle on one epoch.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from .models import Meta

log = logging.getLogger("menteo.db")

EPOCH = "epoch"
HOME = "home"  # PostgreSQL: "<system identifier>:<database oid>" where the epoch was made
RESTORE = "restore"  # in a backup copy: the epoch it was copied from; its first start rotates

# The one advisory lock (PostgreSQL) around schema changes and the epoch: its number
# spells "menteo". Advisory locks belong to one database, so other databases never wait.
SCHEMA_LOCK = 0x6D656E74656F

META: Any = Meta.__table__  # type: ignore[attr-defined]


def fresh() -> str:
    """A new epoch: 12 hex characters, random."""
    return uuid.uuid4().hex[:12]


def lock_schema(conn: Connection) -> None:
    """Hold the schema lock until the transaction ends. On SQLite a write transaction
    (``BEGIN IMMEDIATE`` on the write engine) excludes every other writer already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})


def keep(conn: Connection, key: str, value: str) -> str:
    """The value stored under ``key``; ``value`` is stored first when there is none.
    ``INSERT … ON CONFLICT DO NOTHING`` then a read: two processes doing this at once both
    get the one value stored, and neither fails."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(META).values(key=key, value=value).on_conflict_do_nothing(index_elements=["key"])
    )
    return str(conn.execute(select(META.c.value).where(META.c.key == key)).scalar_one())


def settle(conn: Connection) -> str:
    """The epoch this start serves: the stored one, a new one for a database without one,
    or a new one for a restored database (the module's docstring). Under the schema lock."""
    found = conn.execute(
        select(META.c.key, META.c.value).where(META.c.key.in_((EPOCH, HOME, RESTORE)))
    )
    rows: dict[str, str] = {key: value for key, value in found}
    home = _home(conn)
    stored = rows.get(EPOCH)
    if stored is None:
        epoch = keep(conn, EPOCH, fresh())
    else:
        epoch = stored
        why = None
        if RESTORE in rows:
            why = "it was restored from a backup (menteo-realtime backup)"
        elif home is not None and rows.get(HOME, home) != home:
            why = "it was restored or moved into another PostgreSQL database"
        if why is not None:
            epoch = rotate(conn)
            log.warning(
                "the database has a new epoch %s (was %s): %s; clients resume from scratch",
                epoch,
                stored,
                why,
            )
    if RESTORE in rows:
        conn.execute(delete(META).where(META.c.key == RESTORE))
    if home is not None and rows.get(HOME) != home:
        _put(conn, HOME, home)
    return epoch


def rotate(conn: Connection) -> str:
    """Give the database a new epoch (a detected restore)."""
    epoch = fresh()
    _put(conn, EPOCH, epoch)
    return epoch


def renew(conn: Connection) -> tuple[str | None, str]:
    """``menteo-realtime new-epoch``: ``(the epoch it had, if any, the new one)``. A backup
    mark goes too: this was the rotation it asked for."""
    old = conn.execute(select(META.c.value).where(META.c.key == EPOCH)).scalar()
    new = rotate(conn)
    conn.execute(delete(META).where(META.c.key == RESTORE))
    home = _home(conn)
    if home is not None:
        _put(conn, HOME, home)
    return old, new


def mark_backup(conn: Connection, epoch: str) -> None:
    """In a backup copy: its first start, once restored, takes a new epoch."""
    keep(conn, RESTORE, epoch)


def _put(conn: Connection, key: str, value: str) -> None:
    keep(conn, key, value)
    conn.execute(update(META).where(META.c.key == key).values(value=value))


def _home(conn: Connection) -> str | None:
    """PostgreSQL: which cluster and database this is. A role that may not call
    ``pg_control_system`` (it is public by default) gets the database's oid alone."""
    if conn.dialect.name != "postgresql":
        return None
    oid = conn.execute(
        text("SELECT oid FROM pg_database WHERE datname = current_database()")
    ).scalar_one()
    try:
        with conn.begin_nested():
            system = conn.execute(
                text("SELECT system_identifier FROM pg_control_system()")
            ).scalar_one()
    except DBAPIError:
        return f"?:{oid}"
    return f"{system}:{oid}"
