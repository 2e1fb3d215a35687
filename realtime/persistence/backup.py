"""``menteo-realtime backup PATH``: an online copy of a SQLite database, while it serves.

SQLite's backup API copies the database as one read transaction sees it: in WAL mode the
server's writers go on meanwhile, and the copy holds every event committed before it
began, whole (an event's rows and the stream's seq together). The copy is written beside
``PATH`` and renamed into place once checked, so ``PATH`` is either absent or a complete
backup. It carries a ``restore`` row (persistence/epoch.py): the first server that starts
on it, once restored, gives it a new epoch, so a client's resume point from the events
written after the backup (lost with the restore) resumes nothing instead of skipping the
events that take those seqs next.

PostgreSQL is backed up with ``pg_dump`` (docs/deploy.md, "Backup and restore").
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine

from . import epoch as epochs


class BackupError(RuntimeError):
    """The backup could not be made; nothing was written at the destination."""


@dataclass(frozen=True)
class Backup:
    path: Path
    epoch: str  # the epoch of the database it was copied from
    size: int  # bytes


def backup_sqlite(source: Path, dest: Path) -> Backup:
    """Copy the SQLite database ``source`` to ``dest`` (which must not exist) while a server
    may be writing to it."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if dest.exists():
        raise BackupError(f"{dest} exists: a backup never overwrites a file")
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        epoch = _copy(source, partial)
        _mark(partial, epoch)
        _check(partial)
        os.replace(partial, dest)
    except sqlite3.Error as exc:
        raise BackupError(f"the backup failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return Backup(dest, epoch, dest.stat().st_size)


def _copy(source: Path, dest: Path) -> str:
    # A busy timeout as the server's (its checkpoints take the lock briefly). Nothing here
    # writes to the source.
    with (
        closing(sqlite3.connect(source, timeout=30)) as src,
        closing(sqlite3.connect(dest)) as out,
    ):
        # One step (pages=-1): the whole copy is one read transaction, one state of the
        # database. In steps, a write by the server between two would restart the copy.
        src.execute("BEGIN")
        row = src.execute("SELECT value FROM meta WHERE key = ?", (epochs.EPOCH,)).fetchone()
        if row is None:
            raise BackupError(f"{source} has no epoch: is it a Menteo database a server started?")
        src.backup(out, pages=-1)
        src.execute("COMMIT")
        # The copy stands alone: one file, no -wal beside it (the server sets WAL again).
        out.execute("PRAGMA journal_mode=DELETE")
        return str(row[0])


def _mark(dest: Path, epoch: str) -> None:
    # The file is opened by its path, never through a URL: a name holding '?' or '#' would
    # be read as a URL's query, and the mark would go to another file (the live database).
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(dest))
    try:
        with engine.begin() as conn:
            epochs.mark_backup(conn, epoch)
    finally:
        engine.dispose()


def _check(dest: Path) -> None:
    with closing(sqlite3.connect(dest)) as conn:
        result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        raise BackupError(f"the copy failed its check: {result}")
