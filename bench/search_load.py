"""Chat search at size: room search and all-rooms search latency over a large history.

Loads ``--rooms`` rooms of ``--messages`` chat messages each (default 1,000 x 1,000: one
million) straight into a fresh database, indexes them with the server's own catch-up
(``realtime.persistence.search.catch_up``, the path a search takes), starts
``menteo-realtime serve`` on it and times, from a client over loopback HTTP, one search at a
time:

- **room search** ``GET /api/rooms/{id}/search`` in a random room, and
- **all-rooms search** ``GET /api/search`` for a user who is a member of 10 rooms,

with a mix of queries: a common word, a middling one, a rare one, two words, and a prefix
(search as you type). It also times the **first search of a room whose 1,000 messages are
not indexed yet** (the catch-up included), in ``--cold`` rooms left out of the indexing,
and a **delete of an indexed message** (``chat.delete`` → ``ack`` on a socket: the erasure,
with the FTS5 shard merge and the WAL truncation on SQLite).
Message text is drawn from a synthetic vocabulary with a Zipf distribution (a few words
in many messages, most in few), with English-like endings the stemmers fold.

    python bench/search_load.py                               # SQLite, 1,000,000 messages
    python bench/search_load.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/menteo_bench
    python bench/search_load.py --smoke                       # seconds: the code path only

Prints p50/p95 per kind (milliseconds, client side: HTTP included) as JSON and Markdown.
Figures only: nothing is asserted. PostgreSQL runs drop the database's public schema first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import websockets
from chat_load import SUBPROTOCOL, percentile_ms, start_server, stop_server, wait_ready

from menteo_testkit.database import plain_dsn, reset_schema
from menteo_testkit.server import child_env
from realtime.auth import issue_token
from realtime.persistence.database import Database
from realtime.persistence.search import catch_up

SEARCHER = "searcher"  # the user of the all-rooms searches: a member of 10 rooms
SEARCHER_ROOMS = 10
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ba", "do", "fi", "gu", "pe")
ENDINGS = ("", "", "", "s", "ing", "ed", "er")
MAX_QUERIES = 100_000  # hard bound on any loop


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Corpus:
    """Message bodies: 6-14 words, each a Zipf draw from the vocabulary plus an ending."""

    def __init__(self, vocab_size: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(vocab_size, self.rng)
        self.rng.shuffle(self.words)  # rank 1 is the most frequent
        weights = [1.0 / (rank + 1) for rank in range(len(self.words))]
        total = 0.0
        self.cum: list[float] = []
        for w in weights:
            total += w
            self.cum.append(total)

    def body(self) -> str:
        n = self.rng.randint(6, 14)
        picks = self.rng.choices(self.words, cum_weights=self.cum, k=n)
        return " ".join(w + self.rng.choice(ENDINGS) for w in picks)

    def queries(self) -> dict[str, list[str]]:
        w = self.words
        mid = w[len(w) // 20 : len(w) // 20 + 50]
        return {
            "common word": w[5:15],
            "middling word": mid,
            "rare word": w[-200:-150],
            "two words": [f"{a} {b}" for a, b in zip(w[5:15], mid, strict=False)],
            "prefix": [f"{a} {b[:3]}" for a, b in zip(w[20:70], mid, strict=False)],
        }


def room_ids(rooms: int) -> list[str]:
    return [f"r{n:05d}" for n in range(rooms)]


def members(room: str, n: int) -> list[tuple[str, str, str, str]]:
    out = [(room, f"m{n}", f"Mentor {n}", "mentor"), (room, f"e{n}", f"Mentee {n}", "mentee")]
    if n < SEARCHER_ROOMS:
        out.append((room, SEARCHER, "Searcher", "mentee"))
    return out


def events(room: str, n: int, count: int, corpus: Corpus) -> Iterator[tuple[Any, ...]]:
    for seq in range(1, count + 1):
        author = f"m{n}" if seq % 2 else f"e{n}"
        ts = f"2026-01-{1 + seq // 100_000:02d}T00:00:{(seq // 1000) % 60:02d}.{seq % 1000:03d}Z"
        data = orjson.dumps({"body": corpus.body()}).decode()
        yield (room, seq, "chat.message", author, author.title(), f"c{seq}", data, ts)


def load_sqlite(path: str, rooms: int, count: int, corpus: Corpus) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # loading only; the server sets its own
    for n, room in enumerate(room_ids(rooms)):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO stream VALUES (?, ?, 'now')", (room, count))
        conn.execute(
            "INSERT INTO room (id, title, created_at) VALUES (?, ?, 'now')", (room, f"Room {n}")
        )
        conn.executemany("INSERT INTO member VALUES (?, ?, ?, ?)", members(room, n))
        conn.executemany(
            "INSERT INTO event (stream, seq, type, author_id, author_name, client_id, data, ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            events(room, n, count, corpus),
        )
        conn.execute("COMMIT")
    conn.close()


async def load_postgres(url: str, rooms: int, count: int, corpus: Corpus) -> None:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        ids = room_ids(rooms)
        await conn.executemany(
            "INSERT INTO stream VALUES ($1, $2, 'now')", [(r, count) for r in ids]
        )
        await conn.executemany(
            "INSERT INTO room (id, title, created_at) VALUES ($1, $2, 'now')",
            [(r, f"Room {n}") for n, r in enumerate(ids)],
        )
        await conn.executemany(
            "INSERT INTO member VALUES ($1, $2, $3, $4)",
            [m for n, r in enumerate(ids) for m in members(r, n)],
        )
        columns = ["stream", "seq", "type", "author_id", "author_name", "client_id", "data", "ts"]
        for n, room in enumerate(ids):
            await conn.copy_records_to_table(
                "event", records=list(events(room, n, count, corpus)), columns=columns
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def prepare(opts: argparse.Namespace, url: str, corpus: Corpus) -> dict[str, float]:
    """A fresh schema, the messages, and every room but the cold ones indexed."""
    took: dict[str, float] = {}
    if not url.startswith("sqlite"):
        await reset_schema(url)
    db = Database(url)
    await db.prepare(auto_migrate=True)
    started = time.monotonic()
    if db.is_sqlite:
        path = url.split("///", 1)[1]
        await asyncio.to_thread(load_sqlite, path, opts.rooms, opts.messages, corpus)
    else:
        await load_postgres(url, opts.rooms, opts.messages, corpus)
    took["load_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    warm = room_ids(opts.rooms)[: opts.rooms - opts.cold]
    for i in range(0, len(warm), 10):
        await catch_up(db, warm[i : i + 10])
    took["index_s"] = round(time.monotonic() - started, 1)
    if not url.startswith("sqlite"):
        async with db.pg_write() as conn:
            await conn.execute("ANALYZE chat_fts")
    await db.close()
    return took


async def timed(http: httpx.AsyncClient, path: str, token: str, q: str) -> tuple[float, int]:
    started = time.perf_counter()
    resp = await http.get(path, params={"q": q}, headers={"authorization": "Bearer " + token})
    took = time.perf_counter() - started
    if resp.status_code != 200:
        raise RuntimeError(f"{path}?q={q}: {resp.status_code} {resp.text[:200]}")
    return took, len(resp.json()["results"])


async def measure(
    opts: argparse.Namespace, base: str, secret: str, corpus: Corpus
) -> dict[str, Any]:
    rng = random.Random(11)
    ids = room_ids(opts.rooms)
    warm, cold = ids[: opts.rooms - opts.cold], ids[opts.rooms - opts.cold :]
    service = issue_token(secret, "bench", "Bench", role="service", ttl=86_400)
    searcher = issue_token(secret, SEARCHER, "Searcher", ttl=86_400)
    queries = corpus.queries()
    kinds = list(queries)
    samples: dict[str, list[float]] = {}
    found: dict[str, list[int]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for q in queries["rare word"][:5]:  # warm up: connection, code paths (not counted)
            await timed(http, f"/api/rooms/{warm[0]}/search", service, q)
            await timed(http, "/api/search", searcher, q)
        for n in range(min(opts.searches, MAX_QUERIES)):
            kind = kinds[n % len(kinds)]
            q = rng.choice(queries[kind])
            room = rng.choice(warm)
            took, hits = await timed(http, f"/api/rooms/{room}/search", service, q)
            samples.setdefault(f"room: {kind}", []).append(took)
            samples.setdefault("room: all", []).append(took)
            found.setdefault(f"room: {kind}", []).append(hits)
            found.setdefault("room: all", []).append(hits)
        for n in range(min(opts.searches // 2, MAX_QUERIES)):
            kind = kinds[n % len(kinds)]
            took, hits = await timed(http, "/api/search", searcher, rng.choice(queries[kind]))
            samples.setdefault(f"all rooms: {kind}", []).append(took)
            samples.setdefault("all rooms: all", []).append(took)
            found.setdefault(f"all rooms: {kind}", []).append(hits)
            found.setdefault("all rooms: all", []).append(hits)
        for room in cold:
            took, hits = await timed(
                http, f"/api/rooms/{room}/search", service, queries["common word"][0]
            )
            samples.setdefault("first search of an unindexed room", []).append(took)
            found.setdefault("first search of an unindexed room", []).append(hits)
    deletes = await delete_latency(opts, base, secret, warm[-1], rng)
    samples["delete of an indexed message (ack)"] = deletes
    found["delete of an indexed message (ack)"] = [0] * len(deletes)
    return {
        kind: {
            "n": len(values),
            "p50_ms": percentile_ms(values, 50),
            "p95_ms": percentile_ms(values, 95),
            "mean_results": round(statistics.mean(found[kind]), 1),
        }
        for kind, values in samples.items()
    }


async def delete_latency(
    opts: argparse.Namespace, base: str, secret: str, room: str, rng: random.Random
) -> list[float]:
    """``chat.delete`` → ``ack`` for messages of an indexed room: the erasure's cost (the
    row, the index, the FTS5 shard merge and the WAL truncation on SQLite)."""
    n = int(room.removeprefix("r"))
    token = issue_token(secret, f"m{n}", "Mentor", ttl=86_400)  # the author of odd seqs
    url = base.replace("http://", "ws://") + f"/rooms/{room}/ws?token={token}"
    out = []
    async with websockets.connect(url, subprotocols=[SUBPROTOCOL], compression=None) as ws:
        await ws.recv()  # the welcome
        targets = rng.sample(range(1, opts.messages + 1, 2), min(opts.deletes, opts.messages // 2))
        for i, seq in enumerate(targets):
            frame = {"type": "chat.delete", "id": f"d{i}", "target": seq}
            started = time.perf_counter()
            await ws.send(orjson.dumps(frame).decode())
            while True:
                answer = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                if answer.get("id") == frame["id"] and answer["type"] in ("ack", "error"):
                    break
            if answer["type"] != "ack":
                raise RuntimeError(f"delete refused: {answer}")
            out.append(time.perf_counter() - started)
    return out


def run(opts: argparse.Namespace) -> dict[str, Any]:
    corpus = Corpus(opts.vocabulary)
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        url = opts.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'search.db'}"
        took = asyncio.run(prepare(opts, url, corpus))
        env = child_env(
            {
                "MENTEO_DATABASE_URL": url,
                "MENTEO_SECRET": secret,
                "MENTEO_SEARCH_RATE_PER_SECOND": "0",
                "MENTEO_AUTO_MIGRATE": "1",
            }
        )
        server = start_server(env, Path(tmp) / "server.log", opts.server_cpus)
        try:
            wait_ready(server, 120)
            figures = asyncio.run(measure(opts, server.url, secret, corpus))
        finally:
            stop_server(server)
        size = os.path.getsize(url.split("///", 1)[1]) if url.startswith("sqlite") else None
    return {
        "backend": "sqlite" if url.startswith("sqlite") else "postgresql",
        "rooms": opts.rooms,
        "messages_per_room": opts.messages,
        "messages": opts.rooms * opts.messages,
        "cold_rooms": opts.cold,
        "searches": opts.searches,
        "database_bytes": size,
        **took,
        "latency": figures,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['backend']}: {result['messages']:,} messages in {result['rooms']:,} rooms "
        f"(loaded in {result['load_s']} s, indexed in {result['index_s']} s)",
        "",
        "| search | n | p50 ms | p95 ms | results (mean) |",
        "|---|---|---|---|---|",
    ]
    for kind, row in result["latency"].items():
        lines.append(
            f"| {kind} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | {row['mean_results']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000, help="per room")
    parser.add_argument("--vocabulary", type=int, default=20_000)
    parser.add_argument(
        "--searches", type=int, default=1000, help="room searches (half as many across rooms)"
    )
    parser.add_argument(
        "--cold", type=int, default=20, help="rooms left unindexed for the first-search figure"
    )
    parser.add_argument("--deletes", type=int, default=20, help="deletes timed (ack latency)")
    parser.add_argument("--server-cpus", default=None, help="taskset CPU list for the server")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--smoke", action="store_true", help="20 rooms x 100 messages, 50 searches")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.rooms, opts.messages, opts.searches, opts.cold, opts.vocabulary = 20, 100, 50, 2, 2000
        opts.deletes = 5
    opts.cold = min(opts.cold, opts.rooms - SEARCHER_ROOMS)
    started = time.monotonic()
    result = run(opts)
    result["command"] = "python bench/search_load.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(markdown(result), file=sys.stderr)
    text = json.dumps(result, indent=1)
    print(text)
    if opts.json is not None:
        opts.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
