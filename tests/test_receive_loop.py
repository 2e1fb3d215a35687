"""The one receive loop every socket kind runs (realtime/sockets/receive.py), driven with
real frames through its ASGI receive: size, rate with strikes, closing, binary-only."""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.metrics import Metrics
from realtime.protocol import Close
from realtime.sockets.limits import TokenBucket
from realtime.sockets.receive import Ending, Limits, receive_loop


class Closing:
    closed = False


class Kind:
    """A socket kind's side: records what it handled; ``drop`` says what over-rate frames do."""

    def __init__(self, drop: bool = True) -> None:
        self.transport = Closing()
        self.drop = drop
        self.handled: list[str | bytes] = []
        self.limited_count = 0

    def limited(self) -> bool:
        self.limited_count += 1
        return self.drop

    def handle(self, data: str | bytes) -> Ending | None:
        self.handled.append(data)
        return Ending(4000, "stop") if data == "stop" else None


def feed(*messages: dict[str, Any]) -> Any:
    queue = [*messages, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def text(value: str) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": value}


async def run(kind: Kind, limits: Limits, bucket: TokenBucket, *messages: dict[str, Any]) -> Any:
    metrics = Metrics()
    ending = await asyncio.wait_for(receive_loop(feed(*messages), kind, limits, bucket, metrics), 5)
    return ending, metrics


async def test_frames_reach_the_handler_until_the_peer_goes() -> None:
    kind = Kind()
    ending, _ = await run(kind, Limits(100, 3), TokenBucket(100, 10), text("a"), text("b"))
    assert kind.handled == ["a", "b"]
    assert ending == Ending(1000, by_peer=True)


async def test_a_handler_ending_closes() -> None:
    kind = Kind()
    ending, _ = await run(kind, Limits(100, 3), TokenBucket(100, 10), text("stop"), text("x"))
    assert ending == Ending(4000, "stop") and kind.handled == ["stop"]


async def test_a_frame_over_the_size_closes_1009_and_is_counted() -> None:
    kind = Kind()
    ending, metrics = await run(kind, Limits(4, 3), TokenBucket(100, 10), text("x" * 5))
    assert ending == Ending(Close.TOO_BIG, "frame too large") and kind.handled == []
    assert metrics.counters[("menteo_limit_hits_total", "frame_too_big")] == 1


async def test_over_the_rate_frames_are_dropped_then_the_strikes_close() -> None:
    kind = Kind()
    frames = [text(str(i)) for i in range(6)]
    ending, metrics = await run(kind, Limits(100, 2), TokenBucket(0.001, 2), *frames)
    assert kind.handled == ["0", "1"] and kind.limited_count == 2  # strikes 1 and 2
    assert ending == Ending(Close.POLICY, "rate limit exceeded")  # the third strike
    assert metrics.counters[("menteo_limit_hits_total", "rate_close_1008")] == 1


async def test_a_kind_may_handle_over_the_rate_frames_anyway() -> None:
    kind = Kind(drop=False)
    frames = [text(str(i)) for i in range(3)]
    ending, _ = await run(kind, Limits(100, 5), TokenBucket(0.001, 1), *frames)
    assert kind.handled == ["0", "1", "2"] and ending.by_peer


async def test_a_closing_socket_acts_on_nothing_until_the_disconnect() -> None:
    kind = Kind()
    kind.transport.closed = True
    ending, _ = await run(kind, Limits(4, 3), TokenBucket(100, 10), text("x" * 10), text("a"))
    assert kind.handled == [] and ending == Ending(1000, by_peer=True)


async def test_binary_only_refuses_text() -> None:
    kind = Kind()
    refusal = Ending(1007, "binary only")
    limits = Limits(100, 3, binary_only=refusal)
    binary = {"type": "websocket.receive", "bytes": b"\x00"}
    ending, _ = await run(kind, limits, TokenBucket(100, 10), binary, text("a"))
    assert kind.handled == [b"\x00"] and ending == refusal
