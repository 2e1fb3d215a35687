"""The test helpers surface failures: every wait has a timeout and names what it waited
for, a background reader's exception reaches the test, and the event-stream client tells
an aborted stream from a clean end. (A helper that swallows a failure makes every test
built on it pass whatever the server does.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets

from menteo_testkit.waits import WaitTimeout, wait_event, wait_until, within
from tests.client import RoomClient
from tests.feed_client import SSEFollower, StreamEnded
from tests.notes_client import NotesClient
from tests.servers import Running

# The waits module ----------------------------------------------------------------------


async def test_a_wait_that_runs_out_names_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match=r"not within 0.05 s: the notes synced"):
        await wait_event(asyncio.Event(), "the notes synced", timeout=0.05)
    with pytest.raises(AssertionError, match=r"not within 0.05 s: a port \(now: 'closed'\)"):
        await wait_until(lambda: False, "a port", 0.05, state=lambda: "closed")
    with pytest.raises(TimeoutError):  # still a TimeoutError for a caller that expects one
        await within(asyncio.sleep(1), "a nap", 0.05)


async def test_a_timeout_raised_inside_is_not_taken_for_the_wait_running_out() -> None:
    async def inner() -> None:
        raise TimeoutError("the inner one")

    with pytest.raises(TimeoutError, match="the inner one") as info:
        await within(inner(), "something else", 5)
    assert not isinstance(info.value, WaitTimeout)


async def test_wait_until_wakes_on_its_event_and_takes_async_conditions() -> None:
    wake = asyncio.Event()
    box: list[int] = []

    async def fill() -> None:
        for i in range(3):
            await asyncio.sleep(0)
            box.append(i)
            wake.set()

    filling = asyncio.create_task(fill())
    await wait_until(lambda: len(box) == 3, "three items", 5, wake=wake)
    await filling

    async def ready() -> bool:
        return True

    await wait_until(ready, "an async condition", 1)
    result = await within(asyncio.sleep(0, "done"), "a quick one", 1)
    assert result == "done"


# Room client -----------------------------------------------------------------------------


async def test_no_frame_waits_out_a_silence_and_fails_on_a_frame(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    started = time.monotonic()
    await ana.no_frame(lambda f: True, 0.3, "silence")
    assert time.monotonic() - started >= 0.3
    await ana.send({"type": "ping", "id": "p"})
    with pytest.raises(AssertionError, match=r"expected no pong; got \{'type': 'pong'"):
        await ana.no_frame(lambda f: f["type"] == "pong", 5, "no pong")
    with pytest.raises(WaitTimeout, match=r"a room frame: .*presence.leave"):
        await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout=0.1)


# Notes client ----------------------------------------------------------------------------


@asynccontextmanager
async def fake_notes_server(
    handler: Callable[[Any], Awaitable[None]],
) -> AsyncIterator[str]:
    """A WebSocket server on a free port that does what ``handler`` says (a misbehaving
    peer the real server cannot be made to be)."""
    async with websockets.serve(handler, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_a_notes_reader_failure_is_raised_at_the_test() -> None:
    async def sends_text(ws: Any) -> None:
        await ws.send("text, where the protocol has only binary messages")
        await ws.wait_closed()

    async with fake_notes_server(sends_text) as url:
        client = await NotesClient.connect(url, "room", "token")
        NotesClient.opened.remove(client)
        # A wait fails at once with the reader's error, not after its timeout.
        started = time.monotonic()
        with pytest.raises(AssertionError) as info:
            await client.wait_synced(timeout=10)
        assert time.monotonic() - started < 5
        assert not isinstance(info.value, WaitTimeout)
        with pytest.raises(AssertionError):  # and close() raises it too
            await client.close()


async def test_a_notes_wait_fails_at_once_when_the_socket_closed_first(
    server: Running, room: dict[str, Any]
) -> None:
    eve = await NotesClient.connect(server.ws, room["id"], server.token("eve"))
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"closed \(close code 4403\) before: the server's sync"):
        await eve.wait_synced(timeout=10)
    assert time.monotonic() - started < 5


# Event-stream client ---------------------------------------------------------------------

EVENT = b'event: welcome\ndata: {"type": "welcome"}\n\n'


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@asynccontextmanager
async def fake_stream(complete: bool) -> AsyncIterator[str]:
    """An HTTP server answering one event stream: ended with its last chunk (a clean end),
    or cut mid-response (an abort)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunk(EVENT)
        )
        writer.write(b"0\r\n\r\n" if complete else b"40\r\nevent: x\n")
        await writer.drain()
        writer.close()

    async with await asyncio.start_server(answer, "127.0.0.1", 0) as http_server:
        port = http_server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("complete", [True, False], ids=["clean", "aborted"])
async def test_the_event_stream_client_tells_an_abort_from_a_clean_end(complete: bool) -> None:
    how = "clean" if complete else "aborted"
    async with fake_stream(complete) as url:
        follower = await SSEFollower.connect(url, "")
        try:
            assert follower.welcome == {"type": "welcome", "_sse_id": None}
            assert await follower.end() == how
            assert (follower.end_error is None) == complete
            with pytest.raises(StreamEnded) as info:
                await follower.recv()
            assert info.value.how == how
        finally:
            SSEFollower.opened.remove(follower)
            await follower.close()
