"""No task the whole server depends on dies of one input; one that dies anyway stops the process.

pyo3's ``PanicException`` (a Rust panic in Yrs, under pycrdt) derives from ``BaseException``:
``Panic`` below stands for it. Each test runs a real server and real sockets; the fault is
put where a native library's panic would come from (a hub listener, a reducer inside the
writer's transaction, a broker message's delivery).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from menteo_testkit.waits import wait_event
from realtime.persistence.events import NewEvent, StoredEvent
from realtime.streams.hub import Frames
from realtime.streams.writer import AppendFailed
from realtime.watchdog import EXIT_FAILED
from tests.backends import Backend, make_backend
from tests.client import RoomClient, create_room
from tests.servers import Running, ServerProcess, make_settings, process_env, run_server

TIMEOUT = 5.0


class Panic(BaseException):
    """Like pyo3's ``PanicException``: not an ``Exception``."""


class PanickyListener:
    """A hub listener that panics on events whose body is ``trigger``, as the notes
    document did on a crafted update."""

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self.panicked = 0

    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        if event.data.get("body") == self.trigger:
            self.panicked += 1
            raise Panic("called `Option::unwrap()` on a `None` value")

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        if frames.frame.get("type") == "presence.typing":
            raise Panic("signals too")


class PanickyReducer:
    """A reducer (it runs inside the writer's transaction) that panics on one body."""

    prefix = "chat."

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> Any:
        return None

    def reduce(self, state: Any, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
        if item.data.get("body") == self.trigger:
            raise Panic("called `Result::unwrap()` on an `Err` value")
        return item.data

    async def save(self, conn: AsyncConnection, state: Any) -> None:
        return None


async def two_rooms(server: Running) -> tuple[str, str]:
    members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    a = await create_room(server.url, server.service(), members, title="A")
    b = await create_room(server.url, server.service(), members, title="B")
    return a["id"], b["id"]


async def connect(server: Running, room: str, user: str) -> RoomClient:
    return await RoomClient.connect(server.ws, room, server.token(user))


async def delivered(client: RoomClient, body: str) -> dict[str, Any]:
    return await client.recv_until(
        lambda f: f["type"] == "chat.message" and f["body"] == body, TIMEOUT
    )


async def reply(client: RoomClient, cid: str) -> dict[str, Any]:
    """The ack or error for ``cid``."""
    return await client.recv_until(
        lambda f: f["type"] in ("ack", "error") and f.get("id") == cid, TIMEOUT
    )


async def survived(url: str, part: str) -> int:
    async with httpx.AsyncClient() as http:
        text = (await http.get(url + "/metrics")).text
    found = re.search(rf'^menteo_faults_survived_total{{part="{part}"}} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


async def ready(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url + "/readyz")


async def test_a_listener_that_panics_costs_only_its_own_copy(server: Running) -> None:
    assert server.state is not None
    room_a, room_b = await two_rooms(server)
    ana_a, ben_a = await connect(server, room_a, "ana"), await connect(server, room_a, "ben")
    ana_b, ben_b = await connect(server, room_b, "ana"), await connect(server, room_b, "ben")
    panicky = PanickyListener("boom")
    async with server.state.hub.subscribe(room_a, panicky):
        await ana_a.send({"type": "chat.send", "id": "m1", "body": "boom"})
        assert (await reply(ana_a, "m1"))["type"] == "ack"
        await delivered(ben_a, "boom")  # the other listeners of that event still get it
        assert panicky.panicked == 1

        # Every room still acks and delivers: the writer and the hub are alive.
        await ana_b.send({"type": "chat.send", "id": "m2", "body": "still here"})
        assert (await reply(ana_b, "m2"))["type"] == "ack"
        await delivered(ben_b, "still here")
        await ana_a.send({"type": "chat.send", "id": "m3", "body": "and here"})
        assert (await reply(ana_a, "m3"))["type"] == "ack"
        await delivered(ben_a, "and here")  # the events after it, in the same stream
        # A signal the listener panics on (typing) still reaches the room's sockets.
        await ana_a.send({"type": "typing", "active": True})
        typing = await ben_a.recv_until(lambda f: f["type"] == "presence.typing", TIMEOUT)
        assert typing["user_id"] == "ana"

    assert await survived(server.url, "hub") == 2  # the event and the signal, once each
    assert (await ready(server.url)).status_code == 200


async def test_an_item_that_cannot_be_stored_fails_only_its_own_waiter(server: Running) -> None:
    assert server.state is not None
    room_a, room_b = await two_rooms(server)
    ana_a = await connect(server, room_a, "ana")
    ana_b, ben_b = await connect(server, room_b, "ana"), await connect(server, room_b, "ben")
    writer = server.state.writer
    writer.reducers.insert(0, PanickyReducer("boom"))

    # Queued in one tick, so one batch: the batch fails, then each item alone.
    def item(cid: str, body: str) -> NewEvent:
        return NewEvent(room_b, "chat.message", "ana", "Ana", cid, {"body": body})

    futures = [writer.append(item("d1", "before")), writer.append(item("d2", "boom"))]
    futures.append(writer.append(item("d3", "after")))
    async with asyncio.timeout(TIMEOUT):
        before, bad, after = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(bad, AppendFailed)  # an Exception, whatever the reducer raised
    assert isinstance(bad.__cause__, Panic)
    assert not isinstance(before, BaseException) and before.created
    assert not isinstance(after, BaseException) and after.created
    await delivered(ben_b, "before")
    await delivered(ben_b, "after")

    # Over a socket: that one message gets the `unavailable` error clients already know.
    await ana_a.send({"type": "chat.send", "id": "s1", "body": "boom"})
    await ana_b.send({"type": "chat.send", "id": "s2", "body": "fine"})
    failed = await reply(ana_a, "s1")
    assert failed["type"] == "error" and failed["code"] == "unavailable", failed
    assert (await reply(ana_b, "s2"))["type"] == "ack"
    await ana_a.send({"type": "chat.send", "id": "s3", "body": "next"})
    assert (await reply(ana_a, "s3"))["type"] == "ack"

    assert await survived(server.url, "writer") == 2  # one per failed item
    assert (await ready(server.url)).status_code == 200


@pytest.fixture
async def redis_backend(tmp_path: Path) -> Backend:
    return await make_backend("postgres+redis", tmp_path)  # skips without Redis


@pytest.fixture
async def two_servers(redis_backend: Backend) -> AsyncIterator[tuple[Running, Running]]:
    # No sweep within the test: what reaches the second process comes through the broker.
    settings = make_settings(redis_backend, sweep_interval=600.0)
    async with run_server(settings) as first, run_server(settings) as second:
        yield first, second


async def test_the_broker_reader_survives_a_panic_in_delivery(
    two_servers: tuple[Running, Running],
) -> None:
    first, second = two_servers
    assert second.state is not None
    room_a, room_b = await two_rooms(first)
    ana_a = await connect(first, room_a, "ana")
    ben_a = await connect(second, room_a, "ben")
    ana_b, ben_b = await connect(first, room_b, "ana"), await connect(second, room_b, "ben")
    async with second.state.hub.subscribe(room_a, PanickyListener("boom")):
        # Posted on the first process; the second hears of it through Redis and panics.
        await ana_a.send({"type": "chat.send", "id": "m1", "body": "boom"})
        assert (await reply(ana_a, "m1"))["type"] == "ack"
        await delivered(ben_a, "boom")
        # The second process's reader still hands it every later message.
        await ana_b.send({"type": "chat.send", "id": "m2", "body": "through redis"})
        assert (await reply(ana_b, "m2"))["type"] == "ack"
        await delivered(ben_b, "through redis")
    assert await survived(second.url, "hub") == 1


async def test_a_dead_writer_makes_the_process_unready(server: Running) -> None:
    assert server.state is not None
    stop_asked = asyncio.Event()
    server.state.stop_server = stop_asked.set  # what `serve` gives: stop uvicorn
    room_a, _ = await two_rooms(server)
    ana = await connect(server, room_a, "ana")
    assert (await ready(server.url)).status_code == 200

    writer_task = server.state.writer.task
    assert writer_task is not None
    writer_task.cancel()  # as a bug or a native crash would end it
    await wait_event(stop_asked, "the watchdog to ask the process to stop", TIMEOUT)
    answer = await ready(server.url)
    assert answer.status_code == 503
    assert answer.json()["checks"]["process"] == "error: writer stopped: cancelled"
    # Writes fail at once with the error clients know, instead of hanging.
    await ana.send({"type": "chat.send", "id": "late", "body": "anyone?"})
    failed = await reply(ana, "late")
    assert failed["type"] == "error" and failed["code"] == "unavailable", failed


async def test_a_dead_writer_ends_the_process_with_a_failure_status(tmp_path: Path) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}")
    server = ServerProcess(process_env(backend), module="tests.kill_switch")
    await server.start()
    try:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGUSR1)  # cancels the writer's task
        loop = asyncio.get_running_loop()
        code = await asyncio.wait_for(loop.run_in_executor(None, server.proc.wait), 15)
        await server.logged("writer stopped: cancelled")
        assert code == EXIT_FAILED, "".join(server.output)
    finally:
        server.kill()
