"""The outbox: operations written and not yet acknowledged, each with the client id it was
first sent with, resent with that id after every reconnect until acked. The server stores a
(room, author, id) once and acks a repeat with the original's seq, so a resend never
duplicates. Optionally kept in a JSON file, so a restarted process loses nothing either."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import MAX_CLIENT_ID

Frame = dict[str, Any]


def new_client_id() -> str:
    """A client id: unique, well under the server's 64 characters."""
    return f"py{int(time.time() * 1000):x}-{secrets.token_hex(10)}"


class Pending:
    """One operation in the outbox. ``await pending`` gives the seq of its ack, or raises
    ``FrameRefused`` (refused for good) or ``ClientClosed``; not awaiting it is fine too."""

    __slots__ = ("_waiters", "error", "frame", "id", "seq")

    def __init__(self, frame: Frame) -> None:
        self.id: str = frame["id"]
        self.frame = frame
        self.seq: int | None = None
        self.error: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def done(self) -> bool:
        return self.seq is not None or self.error is not None

    def settle(self, seq: int | None, error: BaseException | None = None) -> None:
        if self.done():
            return
        self.seq, self.error = seq, error
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> int:
        if not self.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        if self.error is not None:
            raise self.error
        assert self.seq is not None
        return self.seq

    def __await__(self) -> Generator[Any, None, int]:
        return self.wait().__await__()

    def __repr__(self) -> str:
        return f"<Pending {self.frame.get('type')} {self.id} seq={self.seq}>"


@dataclass(slots=True)
class _Entry:
    frame: Frame
    created: float


class Outbox:
    """Entries in the order they were written; ``path``: a JSON file that keeps them (one
    file per room and user: a file holds one author's ids)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, Pending] = {}
        for item in self._load():
            self._entries[item.frame["id"]] = item
            self._pending[item.frame["id"]] = Pending(item.frame)

    def add(self, frame: Frame) -> Pending:
        """Keep ``frame`` (a client frame; given a fresh ``id`` when it has none)."""
        cid = frame.get("id")
        if cid is None:
            frame = {**frame, "id": new_client_id()}
        elif not isinstance(cid, str) or not 1 <= len(cid) <= MAX_CLIENT_ID:
            raise ValueError(f"a client id is a string of 1..{MAX_CLIENT_ID} characters")
        if frame["id"] in self._entries:
            return self._pending[frame["id"]]
        self._entries[frame["id"]] = _Entry(frame, time.time())
        self._pending[frame["id"]] = pending = Pending(frame)
        self._save()
        return pending

    def frames(self) -> list[Frame]:
        """The frames waiting, oldest first."""
        return [entry.frame for entry in self._entries.values()]

    def frame(self, cid: str) -> Frame | None:
        entry = self._entries.get(cid)
        return entry.frame if entry is not None else None

    def pending(self) -> list[Pending]:
        return list(self._pending.values())

    def __contains__(self, cid: object) -> bool:
        return cid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def settle(self, cid: str, seq: int | None, error: BaseException | None = None) -> bool:
        """The operation was acked (``seq``) or refused for good (``error``): it leaves."""
        if self._entries.pop(cid, None) is None:
            return False
        self._pending.pop(cid).settle(seq, error)
        self._save()
        return True

    def abandon(self, error: BaseException) -> None:
        """The client closes: whoever awaits an entry gets ``error``; the entries stay (in
        the file, for the next client)."""
        for pending in self._pending.values():
            pending.settle(None, error)

    def _load(self) -> list[_Entry]:
        if self.path is None or not self.path.exists():
            return []
        data = json.loads(self.path.read_text(encoding="utf-8"))
        return [
            _Entry(item["frame"], float(item["created"]))
            for item in data
            if isinstance(item, dict) and isinstance(item.get("frame"), dict)
            and isinstance(item["frame"].get("id"), str)
        ]  # fmt: skip

    def _save(self) -> None:
        """Written whole to a new file, then renamed over the old one: never half written."""
        if self.path is None:
            return
        data = [{"frame": e.frame, "created": e.created} for e in self._entries.values()]
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, self.path)
