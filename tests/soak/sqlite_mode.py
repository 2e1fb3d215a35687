"""The single-process SQLite shape of the soak: one server on a SQLite file in a small
tmpfs of its own, whose disk the chaos fills up and frees again.

``SqliteReader`` answers the few asyncpg calls the verification makes (``fetch``,
``fetchval``, ``close``) from the file, so that verify.py checks both shapes with the same
queries; ``SmallDisk`` is the mount and its filler.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import orjson

_ANY = re.compile(r"= ANY\(\$(\d+)\)")
_PARAM = re.compile(r"\$(\d+)")


class SqliteReader:
    """asyncpg's ``fetch``/``fetchval`` over a SQLite file, read-only: ``= ANY($n)`` with a
    list becomes ``IN (SELECT value FROM json_each(?))``, ``$n`` becomes ``?``."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        self.conn.row_factory = sqlite3.Row

    def _query(self, sql: str, args: tuple[Any, ...]) -> tuple[str, list[Any]]:
        order = [int(n) for n in _PARAM.findall(sql)]
        sql = _ANY.sub(lambda m: f"IN (SELECT value FROM json_each(${m.group(1)}))", sql)
        sql = _PARAM.sub("?", sql)
        values = [args[n - 1] for n in order]
        values = [orjson.dumps(v).decode() if isinstance(v, list) else v for v in values]
        return sql, values

    async def fetch(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        query, values = self._query(sql, args)
        return self.conn.execute(query, values).fetchall()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = (await self.fetch(sql, *args) or [None])[0]
        return None if row is None else row[0]

    async def close(self) -> None:
        self.conn.close()


class SmallDisk:
    """A tmpfs of ``size_mib`` MiB at ``path`` (root only), and a filler file that takes
    every free byte (``fill``) until ``free``."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.filler = path / "filler"
        self.mounted = False

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0755", "tmpfs",
             str(self.path)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.mounted = True

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def used_mib(self) -> float:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize / 2**20

    def truncate_wal(self, db: Path) -> None:
        """Checkpoint the database and truncate its WAL to nothing, as the server does after
        a delete: from then on every commit must grow the WAL, so a full disk refuses it
        (overwriting WAL pages a file already has needs no free byte)."""
        conn = sqlite3.connect(db, timeout=10)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()

    def fill(self) -> int:
        """Take every free byte; returns how many. Unbuffered: a buffered file keeps the
        bytes a full disk refused and tries them again when it closes, which raised ENOSPC
        out of ``with`` now and then (CI's SQLite run)."""
        taken = 0
        with self.filler.open("ab", buffering=0) as f:
            for size in (65536, 16384, 4096, 512, 1):  # the last blocks are partial ones
                block = b"\0" * size
                with contextlib.suppress(OSError):  # ENOSPC: full at this size
                    while written := f.write(block):
                        taken += written
        return taken

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False
