"""Differential fuzz of the notes socket: real Yjs updates, mangled, against a live server.

Updates come from real pycrdt documents making random edits (some authors share a Yjs
client id with diverging histories, the class of update that made Yrs panic). Each is sent
as is, truncated, spliced with another, with bytes flipped, or replayed, over a real notes
socket. The server must refuse (close 1007) or accept each, stay writable (chat in another
room is acked), keep its memory bounded, and hold exactly the text of a reference document
built only from the updates it accepted: live, from the database, and after a restart.

Bounded and seeded for CI (a few seconds); a longer run:
``MENTEO_NOTES_FUZZ_ITERATIONS=5000 MENTEO_NOTES_FUZZ_SEED=7 pytest tests/test_notes_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
from typing import Any

import httpx
import websockets
from pycrdt import Array, Doc, Map, Text, create_sync_message, create_update_message

from menteo_testkit.waits import wait_event, within
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server

ITERATIONS = int(os.environ.get("MENTEO_NOTES_FUZZ_ITERATIONS", "150"))
SEED = int(os.environ.get("MENTEO_NOTES_FUZZ_SEED", "13"))
PANICS = bytes.fromhex("01000b0700080378797a010b010204")
# ASCII: pycrdt's client-side Text panics on some deletes across multi-byte characters.
ALPHABET = "abcdefghij klmnop\n"


def applies(doc: Doc[Any], update: bytes) -> bool:
    """Apply ``update``; False if Yrs refuses or panics (a BaseException) on it."""
    try:
        doc.apply_update(update)
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except BaseException:
        return False
    return True


class Author:
    """A real Yjs document making random edits; its updates are what it would send."""

    def __init__(self, rng: random.Random, client_id: int) -> None:
        self.rng = rng
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.text = self.doc.get("notes", type=Text)
        self.meta = self.doc.get("meta", type=Map)
        self.list = self.doc.get("list", type=Array)
        self.made: list[bytes] = []
        self.doc.observe(lambda event: self.made.append(event.update))

    def edit(self) -> list[bytes]:
        self.made = []
        rng = self.rng
        try:
            for _ in range(rng.randint(1, 4)):
                size = len(self.text)
                roll = rng.random()
                if roll < 0.55 or size == 0:
                    word = "".join(rng.choices(ALPHABET, k=rng.randint(1, 6)))
                    self.text.insert(rng.randint(0, size), word)
                elif roll < 0.8:
                    at = rng.randrange(size)
                    del self.text[at : min(size, at + rng.randint(1, 4))]
                elif roll < 0.9:
                    self.meta[rng.choice("abc")] = rng.randint(0, 9)
                else:
                    self.list.append(rng.randint(0, 9))
        except BaseException as exc:  # pycrdt's own client-side panics: skip that edit
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
        return self.made

    def learn(self, state: bytes) -> None:
        """Catch up with the room (so later edits build on others' text)."""
        applies(self.doc, state)


def mangle(rng: random.Random, update: bytes, pool: list[bytes]) -> tuple[str, bytes]:
    roll = rng.random()
    if roll < 0.35 or not update:
        return "as-is", update
    if roll < 0.5:
        return "truncated", update[: rng.randrange(len(update))]
    if roll < 0.65 and pool:
        other = rng.choice(pool)
        head, tail = rng.randint(0, len(update)), rng.randint(0, len(other))
        return "spliced", update[:head] + other[tail:]
    if roll < 0.85:
        data = bytearray(update)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        return "flipped", bytes(data)
    if roll < 0.97 and pool:
        return "replayed", rng.choice(pool)
    return "known-panic", PANICS


class Wire:
    """A raw notes socket: send one update, then learn whether the server took it."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: Running, room_id: str) -> Wire:
        ws = await websockets.connect(
            f"{server.ws}/rooms/{room_id}/notes?token={server.token('ana')}",
            compression=None,
            open_timeout=10,
            max_size=None,
        )
        return cls(ws)

    async def drain(self) -> None:
        """Read and drop whatever the server sends, until the socket closes."""
        async for _ in self.ws:
            pass

    async def offer(self, update: bytes, probe: Doc[Any]) -> int | None:
        """None: accepted (the sync step 1 after it was answered); else the close code."""

        async def answered() -> None:
            while True:
                message = await self.ws.recv()
                if isinstance(message, bytes) and message[:2] == b"\x00\x01":
                    return

        try:
            await self.ws.send(create_update_message(update))
            await self.ws.send(create_sync_message(probe))
            await within(answered(), "the sync step 2 after an offered update, or a close")
            return None
        except websockets.ConnectionClosed:
            received = self.ws.protocol.close_rcvd
            assert received is not None, "closed without a close frame"
            return received.code


def canonical(doc: Doc[Any]) -> str:
    """The text of ``doc`` encoded and decoded. The same as its own text, except where
    authors shared a Yjs client id with diverging histories: Yjs assumes unique client ids
    and such a document does not survive its encoding unchanged (its stored form wins)."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    return str(copy.get("notes", type=Text))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def notes_text(server: Running, room_id: str) -> str:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get(f"/api/rooms/{room_id}/notes", headers=server.service())
    assert resp.status_code == 200, resp.text
    text: str = resp.json()["text"]
    return text


async def test_mangled_updates_against_a_live_server(backend: Backend) -> None:
    rng = random.Random(f"{SEED}-{backend.name}")
    settings = make_settings(
        backend,
        notes_rate_per_second=1e6,
        notes_rate_burst=1_000_000,
        # No snapshot mid-run: the live document must stay exactly the reference, and
        # a snapshot is an encoding (see ``canonical``). The last socket's close takes one.
        notes_compact_every=1_000_000,
        notes_compact_bytes=1 << 40,
        # Each offer is followed by a sync request, and refusals come in a row: the budgets
        # for those are tested in test_notes_budgets.py.
        notes_sync_per_minute=6e7,
        notes_sync_burst=1_000_000,
        notes_bytes_per_second=1e9,
        notes_bytes_burst=1 << 40,
        notes_refusal_cooldown=0.0,
    )
    reference: Doc[Any] = Doc()
    accepted: list[bytes] = []
    outcomes: dict[str, dict[str, int]] = {}
    # Client ids 11 and 12 have two authors each: the same ids, diverging histories.
    authors = [Author(rng, cid) for cid in (11, 11, 12, 12, rng.randint(100, 2**31))]
    pool: list[bytes] = []
    started_rss = rss_mib()
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = (await create_room(server.url, server.service(), members))["id"]
        other = (await create_room(server.url, server.service(), members))["id"]
        chat = await RoomClient.connect(server.ws, other, server.token("ben"))
        # Keeps the document open between the fuzzing sockets (the last one to leave closes
        # it, and it reopens from its snapshot: an encoding, see ``canonical``).
        anchor = await Wire.open(server, room)
        draining = asyncio.create_task(anchor.drain())
        wire = await Wire.open(server, room)
        for i in range(ITERATIONS):
            author = rng.choice(authors)
            if rng.random() < 0.2:
                author.learn(reference.get_update())
            for made in author.edit():
                kind, update = mangle(rng, made, pool)
                pool.append(made)
                code = await wire.offer(update, reference)
                tally = outcomes.setdefault(kind, {})
                tally[str(code)] = tally.get(str(code), 0) + 1
                if code is None:
                    assert applies(reference, update), f"accepted but does not apply: {kind}"
                    accepted.append(update)
                else:
                    assert code == 1007, f"{kind} update closed the socket with {code}"
                    wire = await Wire.open(server, room)
            if i % 25 == 0:  # every other room is still served by the writer
                assert await within(chat.chat(f"c{i}", "alive"), "a chat ack beside the fuzz") >= 1
        assert await within(chat.chat("last", "alive"), "a chat ack after every notes append") >= 1
        expected = str(reference.get("notes", type=Text))
        assert await notes_text(server, room) == expected, outcomes  # the stored updates
        assert server.state is not None
        document = server.state.notes.open[room].result()
        assert str(document.doc.get("notes", type=Text)) == expected  # the live document
        assert not document.pending  # every accepted update came back from the hub
        # What a joiner receives, and a snapshot holds, is the document's encoding.
        encoded = canonical(reference)
        watcher = await NotesClient.connect(server.ws, room, server.token("ben"))
        await watcher.wait_for(lambda: str(watcher.text) == encoded)
        await wire.ws.close()
        await anchor.ws.close()
        await within(draining, "the anchor socket to close")
        await watcher.close()
        await chat.close()
        await wait_event(document.closed, "the last socket's compaction")
    async with run_server(settings) as again:
        assert await notes_text(again, room) == encoded  # loads whole after a restart
        fresh = await NotesClient.connect(again.ws, room, again.token("ana"))
        await fresh.wait_for(lambda: str(fresh.text) == encoded)
    assert sum(tally.get("None", 0) for tally in outcomes.values()) > 0, outcomes
    assert sum(tally.get("1007", 0) for tally in outcomes.values()) > 0, outcomes
    assert rss_mib() - started_rss < 200, "memory grew beyond a bounded run's"
