"""A webhook receiver on a loopback port, for tests and benches: it records every request
(arrival time, headers, raw body) and answers what it is told to: a script of statuses
first (``then``), else ``status``; ``hang`` holds requests unanswered until released."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from menteo_testkit.waits import TIMEOUT, wait_until

Scope = dict[str, Any]


@dataclass
class Received:
    at: float  # time.time() when the body was read
    headers: dict[str, str]
    body: bytes
    status: int  # what it was answered (0: never answered)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    status: int = 200
    then: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang: bool = False
    answer: bytes = b""  # the body of every answer (a refusal's explanation)
    endless: bool = False  # the answer's body never ends (until released)
    requests: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def answered(self, status: int = 200) -> list[Received]:
        return [r for r in self.requests if r.status == status]

    async def until(
        self, check: Callable[[list[Received]], bool], what: str, timeout: float = TIMEOUT
    ) -> None:
        """Until ``check(requests)`` holds, woken by each request (never a fixed sleep)."""
        await wait_until(lambda: check(self.requests), what, timeout, wake=self.changed)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender gave up before the body was read: not a request
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record = Received(time.time(), headers, body, 0)
        self.requests.append(record)
        self.changed.set()
        if self.hang:
            await self.released.wait()
        status, extra = self.then.pop(0) if self.then else (self.status, {})
        record.status = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        if self.endless:
            await send({"type": "http.response.body", "body": self.answer, "more_body": True})
            await self.released.wait()
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": self.answer})
        self.changed.set()


@contextlib.asynccontextmanager
async def run_receiver(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    receiver = receiver if receiver is not None else Receiver()
    config = uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), "the receiver to start", 15)
        if task.done():
            task.result()
            raise RuntimeError("the webhook receiver exited during startup")
        port = server.servers[0].sockets[0].getsockname()[1]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        yield receiver
    finally:
        receiver.released.set()
        server.should_exit = True
        async with asyncio.timeout(30):
            await task
