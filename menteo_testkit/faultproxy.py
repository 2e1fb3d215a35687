"""A fault-injecting TCP proxy on loopback: put it between a server process and its Redis or
PostgreSQL, then slow, cut or blackhole that one link while everything else runs.

    proxy = FaultProxy(upstream_port)
    await proxy.start()           # listens on proxy.port (a free loopback port)
    proxy.latency = 0.2           # each chunk waits 200 ms, in both directions
    proxy.reset()                 # every open connection is aborted (RST, no FIN)
    proxy.blackhole(True)         # nothing moves; new connections hang, as when packets vanish
    proxy.blackhole(False)        # what was held flows again, in order
    await proxy.close()

A blackhole holds bytes rather than dropping them: TCP retransmits what the network lost,
so after a few seconds of silence a connection that survived sees every byte, late. A
client with a shorter timeout gives up first, as it would on a real network.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from menteo_testkit.ports import HOST

__all__ = ["FaultProxy", "ProxyLoop", "ThreadedProxy"]

T = TypeVar("T")

CHUNK = 65536


class FaultProxy:
    """One listening port forwarding every connection to ``HOST:upstream_port``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = HOST) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.latency = 0.0  # seconds added to each chunk, each way
        self._open = asyncio.Event()  # cleared: blackholed
        self._open.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.accepted = 0
        self.resets = 0  # connections aborted by reset()

    @property
    def blackholed(self) -> bool:
        return not self._open.is_set()

    @property
    def connections(self) -> int:
        return len(self._links)

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, port)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self, on: bool) -> None:
        """Hold every byte and every new connection (``True``) or let them go (``False``)."""
        if on:
            self._open.clear()
        else:
            self._open.set()

    def reset(self) -> int:
        """Abort every open connection, both sides (RST); returns how many."""
        links = list(self._links)
        for link in links:
            link.abort()
        self.resets += len(links)
        return len(links)

    async def close(self) -> None:
        self._open.set()
        if self._server is not None:
            self._server.close()
        self.reset()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._open.wait()  # a blackholed connect hangs, like an unanswered SYN
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                link.abort()  # upstream down: the client sees a refused/reset connection
                return
            link.upstream = up_writer
            if link.aborted:
                link.abort()
                return
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction through a delay line: each chunk is due ``latency`` seconds
        after it was read (a constant delay, not a throughput cap), then waits out any
        blackhole."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            try:
                while not link.aborted:
                    data = await reader.read(CHUNK)
                    line.put_nowait((loop.time() + self.latency, data))
                    if not data:
                        return
            except (OSError, RuntimeError):
                link.abort()
                line.put_nowait((0.0, b""))

        reading = asyncio.create_task(read())
        try:
            while not link.aborted:
                due, data = await line.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the injected latency itself
                await self._open.wait()  # blackholed: hold the bytes until healed
                if link.aborted:
                    return
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()  # pass a half-close on
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):  # RuntimeError: uvloop's write to a closed transport
            link.abort()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


class _Link:
    """The two sockets of one proxied connection."""

    __slots__ = ("aborted", "client", "upstream")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        for w in (self.client, self.upstream):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close sends RST, as a middlebox that drops the flow would.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()

    def close(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None and not w.transport.is_closing():
                w.close()


class ProxyLoop:
    """An event loop of its own, in a daemon thread, for proxies whose forwarding must not
    wait for the caller's loop: the soak's load generator runs thousands of clients on its
    loop, and a proxy there would add that loop's lag to every database round trip."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faultproxy", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the proxies' loop and wait for it (briefly blocking the caller)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class ThreadedProxy:
    """``FaultProxy``'s controls for a proxy that runs on a ``ProxyLoop``."""

    def __init__(self, upstream_port: int, runner: ProxyLoop) -> None:
        self.runner = runner
        self.inner = FaultProxy(upstream_port)

    @property
    def port(self) -> int:
        return self.inner.port

    async def start(self) -> None:
        self.runner.run(self.inner.start())

    @property
    def latency(self) -> float:
        return self.inner.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.runner.loop.call_soon_threadsafe(setattr, self.inner, "latency", seconds)

    def blackhole(self, on: bool) -> None:
        self.runner.loop.call_soon_threadsafe(self.inner.blackhole, on)

    def reset(self) -> int:
        async def reset() -> int:
            return self.inner.reset()

        return self.runner.run(reset())

    async def close(self) -> None:
        self.runner.run(self.inner.close())
