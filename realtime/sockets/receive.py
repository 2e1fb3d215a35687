"""The one receive loop every socket kind runs: the frame size limit, the rate limit with
strikes, then the kind's own handler."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..metrics import Metrics
from ..protocol import Close
from .limits import TokenBucket
from .transport import ASGIReceive


class Ending(NamedTuple):
    """How a receive loop ended: the peer went (``by_peer``, with its close code), or the
    socket must be closed with ``code`` and ``reason``."""

    code: int
    reason: str = ""
    by_peer: bool = False


class Outbound(Protocol):
    @property
    def closed(self) -> bool: ...


class Handler(Protocol):
    """A socket kind's side of the loop."""

    @property
    def transport(self) -> Outbound: ...

    def limited(self) -> bool:
        """A frame over the rate (strikes still allowed): True drops it (the kind may tell
        the peer), False handles it anyway."""
        ...

    def handle(self, data: str | bytes) -> Ending | Awaitable[Ending | None] | None:
        """Act on one frame; an Ending closes the socket. An awaitable is awaited before the
        next frame is read (for the rare step that must wait)."""
        ...


@dataclass(slots=True, frozen=True)
class Limits:
    """One socket kind's receive limits; ``*_reason`` are the close reasons, ``*_metric``
    the limit-hit labels counted (None: not counted here)."""

    max_bytes: int
    strikes: int
    too_big_reason: str = "frame too large"
    too_big_metric: str | None = "frame_too_big"
    rate_reason: str = "rate limit exceeded"
    rate_metric: str | None = "rate_close_1008"
    # A text message on a binary-only socket: the close, or None when text is allowed.
    binary_only: Ending | None = None


async def receive_loop(
    receive: ASGIReceive,
    handler: Handler,
    limits: Limits,
    bucket: TokenBucket,
    metrics: Metrics,
) -> Ending:
    """Read frames until the peer goes or the socket must close. A socket closing for
    another reason (too slow, token expired) reads on until the server reports the
    disconnect, acting on nothing."""
    transport = handler.transport
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return Ending(int(message.get("code", 1005)), by_peer=True)
        data = message.get("bytes") if limits.binary_only else message.get("text")
        if data is None:
            if limits.binary_only:
                return limits.binary_only
            data = message.get("bytes") or b""
        if transport.closed:
            continue  # closing: whatever still arrives is not acted on
        if _over(data, limits.max_bytes):
            if limits.too_big_metric is not None:
                metrics.inc("menteo_limit_hits_total", limits.too_big_metric)
            return Ending(Close.TOO_BIG, limits.too_big_reason)
        if not bucket.take():
            if bucket.strikes > limits.strikes:
                if limits.rate_metric is not None:
                    metrics.inc("menteo_limit_hits_total", limits.rate_metric)
                return Ending(Close.POLICY, limits.rate_reason)
            if handler.limited():
                continue
        ending = handler.handle(data)
        if ending is not None and not isinstance(ending, Ending):
            ending = await ending  # the handler waits once (e.g. a shared budget's lease)
        if ending is not None:
            return ending


def _over(data: str | bytes, limit: int) -> bool:
    """Whether a frame is over ``limit`` bytes. Text is measured as the UTF-8 it came in
    (up to 4 bytes a character), encoded only when its length in characters cannot tell."""
    size = len(data)
    if size > limit:
        return True
    if isinstance(data, bytes) or size * 4 <= limit or data.isascii():
        return False
    return len(data.encode("utf-8", "surrogatepass")) > limit
