"""Frame bytes for the wire: RFC 6455 server frames, built once per event, and the cork
that turns a batch of deliveries into one write per socket."""

from __future__ import annotations

import logging
import struct
from typing import Protocol

from ..faults import is_fatal
from ..protocol import Codec
from ..streams.hub import Frames

log = logging.getLogger("menteo.socket")


def ws_frame(data: str | bytes) -> bytes:
    """``data`` as one unfragmented, unmasked server frame (RFC 6455 §5.2): text for a str,
    binary for bytes. A server never masks, so these bytes suit every recipient."""
    if isinstance(data, str):
        payload, head = data.encode(), 0x81
    else:
        payload, head = data, 0x82
    size = len(payload)
    if size < 126:
        return bytes((head, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", head, 126, size) + payload
    return struct.pack("!BBQ", head, 127, size) + payload


def frame_bytes(frames: Frames, codec: Codec) -> bytes:
    """A hub frame's encoding as a ready WebSocket frame (header and payload), built once
    per codec however many sockets receive it."""
    cache = frames.wired
    if cache is None:
        cache = frames.wired = {}
    data = cache.get(codec.name)
    if data is None:
        data = cache[codec.name] = ws_frame(frames.encoded(codec))
    return data


class Corked(Protocol):
    """A socket that held its writes while a batch was delivered."""

    def uncork(self) -> None: ...


class Cork:
    """While the hub delivers a batch of events (a commit, a broker message), sockets hold
    their ready frames and write them once at its end: one ``write(2)`` per socket per
    batch instead of one per event. Nothing awaits in between, so no frame is delayed."""

    __slots__ = ("depth", "held")

    def __init__(self) -> None:
        self.depth = 0
        self.held: list[Corked] = []

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self.depth -= 1
        if self.depth:
            return
        held, self.held = self.held, []
        for corked in held:
            try:
                corked.uncork()
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                log.exception("writing a batch to a socket failed")


CORK = Cork()  # one per process: the event loop delivers one batch at a time
