"""A room member that keeps talking through restarts: it sends at a steady pace, keeps what
is not acknowledged and resends it with the same id after a reconnect, resumes with
``since``/``epoch``, and checks that the messages it receives are gap-free and never
repeated. What the load of a rolling restart is made of (tests/browser/test_nginx_deploy.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets

JSON = "menteo.v1.json"


class Progress:
    """Wakes whoever waits for a condition on the talkers each time a frame arrives."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()

    async def until(self, holds: Callable[[], bool], what: str, timeout: float = 20) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not holds():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {timeout:g} s: {what}") from None


@dataclass
class Talker:
    name: str
    url: str  # wss://HOST:PORT/rooms/ID/ws
    token: str
    tls: ssl.SSLContext
    progress: Progress
    pace: float = 0.05  # seconds between two messages
    outbox: dict[str, str] = field(default_factory=dict)  # id -> body, not acked yet
    sent: set[str] = field(default_factory=set)
    acked: dict[str, int] = field(default_factory=dict)  # id -> seq
    received: list[int] = field(default_factory=list)  # chat.message seqs, as they came
    closes: list[int | None] = field(default_factory=list)  # close codes of ended sockets
    sockets: int = 0
    last: int = 0  # the newest seq received: every socket resumes after it (since=0 first)
    epoch: str | None = None

    async def connect(self) -> Any:
        """A socket, welcomed, with the outbox resent; retried while the proxy fails over."""
        query = f"?since={self.last}" + (f"&epoch={self.epoch}" if self.epoch else "")
        async with asyncio.timeout(20):
            while True:
                try:
                    ws = await websockets.connect(
                        self.url + query,
                        subprotocols=[JSON, "menteo.token." + self.token],  # type: ignore[list-item]
                        ssl=self.tls,
                        open_timeout=5,
                        compression=None,
                    )
                    welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                    break
                except (OSError, TimeoutError, websockets.WebSocketException):
                    await asyncio.sleep(0.05)  # the retry's pace, not a wait for anything
        assert welcome["type"] == "welcome", welcome
        assert welcome["recovered"], f"{self.name}: resume after {self.last} not honoured"
        self.epoch = welcome["epoch"]
        self.sockets += 1
        for cid, body in self.outbox.items():
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(self._frame(cid, body))
        return ws

    @staticmethod
    def _frame(cid: str, body: str) -> str:
        return orjson.dumps({"type": "chat.send", "id": cid, "body": body}).decode()

    def take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "chat.message":
            seq = frame["seq"]
            assert seq == self.last + 1, f"{self.name}: seq {seq} after {self.last}"
            self.last = seq
            self.received.append(seq)
        elif kind == "ack":
            self.acked[frame["id"]] = frame["seq"]
            self.outbox.pop(frame["id"], None)
        elif kind == "error":
            raise AssertionError(f"{self.name}: {frame}")
        self.progress.changed.set()

    async def _read(self, ws: Any) -> None:
        try:
            async for data in ws:
                self.take(orjson.loads(data))
        except websockets.ConnectionClosed:
            pass
        self.closes.append(ws.close_code)
        self.progress.changed.set()

    async def talk(self, stop: asyncio.Event) -> None:
        """Send until ``stop``, then until everything sent is acknowledged."""
        count = 0
        while True:
            ws = await self.connect()
            reader = asyncio.create_task(self._read(ws))
            try:
                while not reader.done():
                    if stop.is_set():
                        if not self.outbox:
                            return
                    else:
                        cid, body = f"{self.name}-{count}", f"{self.name} says {count}"
                        count += 1
                        self.outbox[cid] = body
                        self.sent.add(cid)
                        with contextlib.suppress(websockets.ConnectionClosed):
                            await ws.send(self._frame(cid, body))
                    await asyncio.wait({reader}, timeout=self.pace)  # the sending pace
            finally:
                await ws.close()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def catch_up(self, seq: int, timeout: float = 15) -> None:
        """Resume once more and read up to ``seq``: what the others sent after this one
        stopped talking."""
        ws = await self.connect()
        try:
            async with asyncio.timeout(timeout):
                while self.last < seq:
                    self.take(orjson.loads(await ws.recv()))
        finally:
            await ws.close()
