"""What every client shares: stay connected (backoff with jitter, a fresh token when needed,
refusals that end it), the welcome, the resume point (``epoch`` and the last ``seq``), and
the frames handed to the application, each stored event once and in order.

A transport (``socket.py``: WebSocket; ``sse.py``: the event stream) runs one connection
in ``_session`` and says how it ended; the kinds of client (room, feed) say where to
connect and what a welcome and a frame mean to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ..protocol import Close
from .errors import ClientClosed, Refused, TokenError
from .events import MAXSIZE, Dispatcher, Events, Frame, Handler
from .tokens import STALE_BEFORE, TokenGetter, TokenSource
from .transport import backoff_delay, http_base

log = logging.getLogger("menteo.client")

StateHandler = Callable[[str, dict[str, Any]], object]


@dataclass(frozen=True, slots=True)
class Ended:
    """How one connection ended: a close code (or an HTTP status, or None when it dropped
    without one), whether reconnecting cannot help, and whether it had been welcomed."""

    code: int | None
    reason: str = ""
    fatal: bool = False
    welcomed: bool = False


class Reconnecting:
    """A connection kept open until ``close()`` or a refusal; see the subclasses."""

    name = "connection"
    # Close codes after which reconnecting cannot help (4401 only when the token cannot be
    # renewed, or a renewed one was refused too).
    fatal_closes: frozenset[int] = frozenset({Close.UNAUTHORIZED, Close.FORBIDDEN})

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: TokenGetter | None = None,
        on_state: StateHandler | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        welcome_timeout: float = 15.0,
        renew_before: float = STALE_BEFORE,
    ) -> None:
        self.base_url = http_base(url)
        self.tokens = TokenSource(token, get_token, renew_before)
        self.state = "idle"
        self.welcome: Frame | None = None  # the last welcome frame
        self.epoch: str | None = None  # the database the events belong to
        self.last_seq: int | None = None  # the newest stored event seen
        self.connections = 0  # connections welcomed so far
        self.error: BaseException | None = None  # why it stopped, if refused
        self._on_state = on_state
        self._backoff = backoff
        self.welcome_timeout = welcome_timeout
        self._hub = Dispatcher()
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._started = asyncio.Event()
        self._renew_next = False

    # What the application uses ------------------------------------------------------------

    def on(self, type_: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(frame)`` for every frame of ``type_`` (``"*"``: every frame, the
        welcome of each connection included); returns a function that unregisters it."""
        return self._hub.on(type_, handler)

    def events(self, *types: str, maxsize: int = MAXSIZE) -> Events:
        """An async iterator over the frames of ``types`` (every frame when none) from now:
        made right after ``start()`` (or ``async with``) returns, it misses nothing after
        the first welcome, which is in ``.welcome``."""
        return self._hub.events(types, maxsize)

    async def start(self) -> Self:
        """Connect; returns once the first welcome came (raises ``Refused`` if the server
        refused for good). Reconnects by itself after that, until ``close()``."""
        if self._task is None:
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name=f"menteo-{self.name}")
        assert self._first is not None
        await asyncio.shield(self._first)
        self._started.set()  # nothing awaited from here: the caller subscribes first
        return self

    async def wait(self) -> None:
        """Until the client stops: returns after ``close()``, raises why it was refused."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Close for good (code 1000)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stopped(None)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # The loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception as exc:  # a bug of ours or of a hook: stop and say so, not hang
            log.exception("%s: stopped by an error", self.name)
            self._stopped(exc)

    async def _loop(self) -> None:
        attempt, renewed_after_4401 = 0, False
        while True:
            try:
                renew = self.tokens.renew if self._renew_next else self.tokens.for_connect
                token = await renew()
            except TokenError as exc:
                self._stopped(exc)
                return
            except Exception as exc:  # get_token failed this time: try again later
                log.warning("%s: get_token failed: %r", self.name, exc)
                ended = Ended(None, f"get_token failed: {exc!r}")
            else:
                self._renew_next = False
                self._set_state("connecting" if self.connections == 0 else "reconnecting")
                ended = await self._session(token)
            if ended.welcomed:
                attempt, renewed_after_4401 = 0, False
            expired = ended.code == Close.UNAUTHORIZED and self.tokens.renewable
            if expired and not renewed_after_4401:
                renewed_after_4401, self._renew_next = True, True  # renew, come back at once
                continue
            if ended.fatal or ended.code in self.fatal_closes:
                self._stopped(Refused(ended.code or 0, ended.reason))
                return
            if ended.code == Close.SERVER_RESTART:
                attempt = 0  # another process is up already: come back soon
            elif ended.code == Close.POLICY:
                attempt = max(attempt, 5)  # flooded: slow down (4 s steps and up)
            delay = backoff_delay(attempt, base=self._backoff[0], cap=self._backoff[1])
            attempt += 1
            self._set_state("reconnecting", {"code": ended.code, "delay": delay})
            await asyncio.sleep(delay)  # the backoff itself, not a wait on an event

    def _stopped(self, error: BaseException | None) -> None:
        if self.state == "stopped":
            return
        self.error = error
        self._set_state("stopped", {"error": error})
        self._down()
        if self._first is not None and not self._first.done():
            self._first.set_exception(error or ClientClosed("closed before the first welcome"))
            self._first.exception()  # retrieved: start() raises it, if anyone called it
        self._hub.end(error)

    def _set_state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        self.state = state
        if self._on_state is not None:
            try:
                self._on_state(state, detail or {})
            except Exception:
                log.exception("%s: the on_state handler failed", self.name)

    # What a transport calls -----------------------------------------------------------------

    async def _welcomed_frame(self, frame: Frame) -> None:
        """The first frame of a connection: the resume point, then the application."""
        self.welcome = frame
        self.connections += 1
        epoch = frame.get("epoch")
        self.epoch = epoch if isinstance(epoch, str) else None
        self._welcomed(frame)
        self._set_state("live")
        self._hub.dispatch(frame)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
            await self._started.wait()  # start() returned: its caller has subscribed
        self._live()

    def _frame(self, frame: Frame) -> None:
        """A later frame: a stored event already seen (by seq) is dropped here."""
        if self._is_event(frame):
            seq = frame["seq"]
            if self.last_seq is not None and seq <= self.last_seq:
                return
            self.last_seq = seq
        if self._received(frame):
            self._hub.dispatch(frame)

    # What a kind of client defines ----------------------------------------------------------

    async def _session(self, token: str) -> Ended:
        raise NotImplementedError

    def _is_event(self, frame: Frame) -> bool:
        """A stored event (it carries the stream's ``seq``)."""
        return isinstance(frame.get("seq"), int)

    def _welcomed(self, frame: Frame) -> None:
        """Take the welcome's resume point (``last_seq`` when not recovered)."""

    def _received(self, frame: Frame) -> bool:
        """A later frame; False keeps it from the application."""
        return True

    def _live(self) -> None:
        """The connection is live (after the welcome was handed on)."""

    def _down(self) -> None:
        """The connection ended (or the client stopped)."""
