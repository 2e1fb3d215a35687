"""The soak's fault-injecting TCP proxy (menteo_testkit/faultproxy.py): bytes pass unchanged
both ways, latency delays them, reset aborts every open connection (the far side sees a
reset, not a clean close), and a blackhole holds bytes and new connections until healed.
Against a real echo server and a real private Redis."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from menteo_testkit.faultproxy import FaultProxy, ProxyLoop, ThreadedProxy
from menteo_testkit.ports import HOST
from menteo_testkit.redis_server import RedisServer
from menteo_testkit.waits import within


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def proxy(echo: int) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(echo)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(data)
    await writer.drain()
    got = await within(reader.readexactly(len(data)), "the echo through the proxy")
    assert got == data
    return loop.time() - started


async def test_bytes_pass_unchanged_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    payload = bytes(range(256)) * 1024  # 256 KiB: more than one chunk
    await roundtrip(reader, writer, payload)
    await roundtrip(reader, writer, b"x")
    assert proxy.connections == 1
    writer.close()


async def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    assert await roundtrip(reader, writer, b"fast") < 0.2
    proxy.latency = 0.15
    took = await roundtrip(reader, writer, b"slow")
    assert took >= 0.3  # 0.15 s there and 0.15 s back
    proxy.latency = 0
    assert await roundtrip(reader, writer, b"fast again") < 0.2
    writer.close()


async def test_reset_aborts_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    await roundtrip(reader, writer, b"hello")
    assert proxy.reset() == 1
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await within(reader.readexactly(1), "the reset to reach the client")
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    await roundtrip(reader, writer, b"again")
    writer.close()


async def test_blackhole_holds_bytes_and_connects_until_healed(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(HOST, proxy.port)
    await roundtrip(reader, writer, b"before")
    proxy.blackhole(True)
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)  # what is asserted: nothing arrives
    late_reader, late_writer = await asyncio.open_connection(HOST, proxy.port)
    late_writer.write(b"late")
    proxy.blackhole(False)
    assert await within(reader.readexactly(4), "the held bytes after healing") == b"held"
    assert await within(late_reader.readexactly(4), "the held connect after healing") == b"late"
    writer.close()
    late_writer.close()


async def test_upstream_down_refuses_through_the_proxy() -> None:
    p = FaultProxy(1)  # nothing listens on port 1
    await p.start()
    try:
        reader, writer = await asyncio.open_connection(HOST, p.port)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await within(reader.readexactly(1), "the proxy to give up on the upstream")
        writer.close()
    finally:
        await p.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
async def test_a_redis_client_sees_each_fault(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    await redis.start()
    p = FaultProxy(redis.port)
    await p.start()
    # No retries: each fault must reach the caller (redis-py retries by default).
    client = aioredis.Redis(host=HOST, port=p.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    try:
        assert await client.ping()
        p.reset()
        with pytest.raises(aioredis.ConnectionError):
            await client.ping()  # the pooled connection was reset
        assert await client.ping()  # a new one goes through
        p.blackhole(True)
        with pytest.raises((aioredis.TimeoutError, TimeoutError)):
            await client.ping()
        p.blackhole(False)
        await client.connection_pool.disconnect()
        assert await client.ping()
    finally:
        await client.aclose()
        await p.close()
        redis.kill()


async def test_a_proxy_on_its_own_loop_forwards_while_ours_is_busy(echo: int) -> None:
    """``ThreadedProxy``: forwarding runs on the ``ProxyLoop``'s thread, so a round trip does
    not wait for the caller's event loop (the soak's is busy with every client)."""
    runner = ProxyLoop()
    proxy = ThreadedProxy(echo, runner)
    try:
        await proxy.start()
        reader, writer = await asyncio.open_connection(HOST, proxy.port)
        await roundtrip(reader, writer, b"through a thread")
        proxy.latency = 0.15
        assert await roundtrip(reader, writer, b"slow") >= 0.3
        proxy.latency = 0
        assert proxy.reset() == 1
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await within(reader.readexactly(1), "the reset to reach the client")
        writer.close()
    finally:
        await proxy.close()
        runner.stop()
