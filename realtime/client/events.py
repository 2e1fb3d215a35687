"""Frames to the application: handlers called as frames arrive, and iterators over them.

The client's reader never waits on application code, so an application that awaits an ack
inside a handler's task or an ``async for`` body cannot stall the acks it waits for. So:
handlers are plain functions (quick; start a task for slow work), and each iterator has a
bounded queue whose overflow ends that iterator with ``Overflow`` (the client goes on).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from .errors import Overflow

Frame = dict[str, Any]
Handler = Callable[[Frame], object]

log = logging.getLogger("menteo.client")

ANY = "*"  # the type under which a handler or iterator gets every frame
MAXSIZE = 10_000  # frames an iterator may fall behind by default


class _End:
    """Queued after the last frame of an iterator: why it ends (None: the client closed)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Events(AsyncIterator[Frame]):
    """``async for frame in client.events("chat.message")``: the frames of those types (all
    with none given), in arrival order, from the moment it was made. It ends when the client
    closes, raises ``Refused`` when the server refused the client for good, and ``Overflow``
    after the frames it holds when its consumer fell ``maxsize`` frames behind. Leaving an
    ``async with`` block (or ``aclose()``) unsubscribes it."""

    def __init__(self, hub: Dispatcher, types: frozenset[str], maxsize: int) -> None:
        self._hub = hub
        self.types = types
        self._queue: asyncio.Queue[Frame | _End] = asyncio.Queue()
        self._maxsize = maxsize
        self._ended = False

    def _put(self, frame: Frame) -> None:
        if self._ended:
            return
        if self._queue.qsize() >= self._maxsize:
            self._finish(Overflow(f"an events() iterator fell {self._maxsize} frames behind"))
            return
        self._queue.put_nowait(frame)

    def _finish(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_End(error))
            self._hub.unsubscribe(self)

    async def __anext__(self) -> Frame:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # a later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._finish(None)

    async def __aenter__(self) -> Events:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Dispatcher:
    """Handlers and iterators by frame type."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._iterators: list[Events] = []
        self._ended: BaseException | bool | None = False

    def on(self, type_: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(frame)`` for each frame of ``type_`` (``"*"``: every frame); the
        function returned unregisters it. A plain function: the reader calls it inline, so
        it must be quick (start a task for slow work, or iterate ``events()``)."""
        if inspect.iscoroutinefunction(handler):
            raise TypeError("a handler is a plain function: iterate events() to await per frame")
        self._handlers.setdefault(type_, []).append(handler)

        def off() -> None:
            handlers = self._handlers.get(type_, [])
            if handler in handlers:
                handlers.remove(handler)

        return off

    def events(self, types: tuple[str, ...], maxsize: int) -> Events:
        iterator = Events(self, frozenset(types), maxsize)
        if self._ended is not False:
            iterator._finish(self._ended if isinstance(self._ended, BaseException) else None)
        else:
            self._iterators.append(iterator)
        return iterator

    def unsubscribe(self, iterator: Events) -> None:
        if iterator in self._iterators:
            self._iterators.remove(iterator)

    def dispatch(self, frame: Frame) -> None:
        kind = frame.get("type")
        for handler in [*self._handlers.get(str(kind), ()), *self._handlers.get(ANY, ())]:
            try:
                handler(frame)
            except Exception:  # the application's bug must not end the connection
                log.exception("a handler of %r frames failed", kind)
        for iterator in list(self._iterators):
            if not iterator.types or kind in iterator.types:
                iterator._put(frame)

    def end(self, error: BaseException | None) -> None:
        """No more frames: every iterator ends (with ``error``, if given)."""
        self._ended = error if error is not None else True
        for iterator in list(self._iterators):
            iterator._finish(error)
