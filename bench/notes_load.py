"""How long a room's notes take to load: 10,000 small edits, before and after compaction.

    python bench/notes_load.py [--edits 10000] [--database-url URL]

Edits are stored through the server's own append path (group-commit batches of 500) as
Yjs updates of a few characters each, like typing; then ``store.load`` is timed (best of 5)
reading them all, then after ``store.compact`` reading one snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from pycrdt import Doc, Text

from realtime.notes import store
from realtime.persistence.database import Database
from realtime.persistence.events import NewEvent, append_batch
from realtime.persistence.rooms import MemberRecord, create_room, notes_stream


async def timed_load(db: Database, room_id: str) -> tuple[float, str]:
    times = []
    text = ""
    for _ in range(5):
        started = time.perf_counter()
        async with db.read() as conn:
            doc = (await store.load(conn, room_id)).doc
        times.append((time.perf_counter() - started) * 1000)
        text = store.text_of(doc)
    return min(times), text


async def run(url: str, edits: int) -> dict[str, float]:
    db = Database(url)
    await db.prepare(auto_migrate=True)
    async with db.write() as conn:
        room = await create_room(conn, "bench", [MemberRecord("ana", "Ana", "mentor")])
    author: Doc[Any] = Doc()
    text = author.get("notes", type=Text)
    updates: list[bytes] = []
    author.observe(lambda event: updates.append(event.update))
    for i in range(edits):
        text.insert(len(str(text)) if i % 7 else 0, f"w{i % 10} ")  # typing, some at the top
    history = sum(len(u) for u in updates)
    for start in range(0, len(updates), 500):
        items = [
            NewEvent(
                notes_stream(room.id),
                "notes.update",
                "ana",
                "Ana",
                None,
                store.event_data(u, "bench"),
            )
            for u in updates[start : start + 500]
        ]
        async with db.write() as conn:
            await append_batch(conn, items, lock_rows=not db.is_sqlite)
    before_ms, before_text = await timed_load(db, room.id)
    async with db.read() as conn:
        loaded = await store.load(conn, room.id)
    doc, seq = loaded.doc, loaded.seq
    # keep_after in the far future: drop every covered update
    await store.compact(db, room.id, doc.get_update(), seq, keep_after="9999")
    after_ms, after_text = await timed_load(db, room.id)
    await db.close()
    assert before_text == after_text == str(text), "compaction changed the text"
    return {
        "edits": edits,
        "update_bytes": history,
        "snapshot_bytes": len(doc.get_update()),
        "load_ms_before": round(before_ms, 1),
        "load_ms_after": round(after_ms, 1),
        "median_update_bytes": statistics.median(len(u) for u in updates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=10_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/notes.db"
        result = asyncio.run(run(url, args.edits))
    print("| edits | update history | snapshot | load before compaction | load after |")
    print("|---|---|---|---|---|")
    print(
        f"| {result['edits']} | {result['update_bytes'] / 1024:.0f} KiB | "
        f"{result['snapshot_bytes'] / 1024:.0f} KiB | {result['load_ms_before']} ms | "
        f"{result['load_ms_after']} ms |"
    )


if __name__ == "__main__":
    main()
