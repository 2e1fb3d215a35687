"""Webhook delivery across restarts and processes (issue 18): ``serve`` processes killed
with -9 and restarted, two processes on PostgreSQL and Redis; a real receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from menteo_testkit.waits import wait_until
from menteo_testkit.webhook_receiver import Receiver, run_receiver
from realtime.auth import issue_token
from realtime.notify.signing import verify
from tests.backends import Backend
from tests.client import RoomClient, connect_inbox, create_room
from tests.servers import SECRET, ServerProcess, process_env

HOOK_SECRET = "whsec-" + "p" * 40


def token(user: str, **kw: Any) -> str:
    return issue_token(SECRET, user, user.title(), **kw)


SERVICE = {"authorization": "Bearer " + token("backend", role="service")}


def hook_env(backend: Backend, url: str, **extra: str) -> dict[str, str]:
    settings = {
        "MENTEO_WEBHOOK_URL": url,
        "MENTEO_WEBHOOK_SECRET": HOOK_SECRET,
        "MENTEO_NOTIFY_DELAY": "0.3",
        "MENTEO_WEBHOOK_TIMEOUT": "1",
        "MENTEO_PRESENCE_GRACE": "0.5",
    }
    return process_env(backend, **(settings | extra))


@asynccontextmanager
async def outbox_reader(url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(url)

    async def states() -> list[tuple[str, str, str]]:
        async with engine.connect() as conn:
            sql = "SELECT id, user_id, state FROM webhook_outbox ORDER BY id"
            return [tuple(r) for r in await conn.execute(text(sql))]

    try:
        yield states
    finally:
        await engine.dispose()


async def settled(states: Any, count: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    async def done() -> bool:
        rows[:] = await states()
        return len(rows) == count and all(s not in ("pending", "ready") for _, _, s in rows)

    await wait_until(done, f"{count} outbox rows to settle", 30, state=lambda: rows)
    return rows


async def test_killed_after_due_before_delivery_it_is_delivered_once_after_restart(
    backend: Backend,
) -> None:
    """Due, claimed, its first attempt answered 503: kill -9. The restarted server delivers
    it, with the same id, once."""
    async with run_receiver(Receiver(status=503)) as hook:
        env = hook_env(backend, hook.url)
        server = ServerProcess(env)
        await server.start()
        try:
            room = await create_room(
                server.url, SERVICE, [("ana", "Ana", "mentee"), ("ben", "Ben", "mentor")]
            )
            ben = await RoomClient.connect(server.ws, room["id"], token("ben"))
            await ben.chat("b1", "see you tomorrow")
            await hook.until(lambda r: len(r) >= 1, "the first attempt (503)")
            server.kill()
            first = hook.requests[0].json["id"]
            hook.status = 200
            server = ServerProcess(env)
            await server.start()
            await hook.until(lambda r: len(hook.answered(200)) == 1, "delivery after restart", 30)
            async with outbox_reader(backend.database_url) as states:
                assert await settled(states, 1) == [(first, "ana", "done")]
            assert len(hook.answered(200)) == 1
            assert {r.json["id"] for r in hook.requests} == {first}
            assert all(
                verify(HOOK_SECRET, r.body, r.headers["menteo-signature"]) for r in hook.requests
            )
        finally:
            server.kill()


@pytest.mark.parametrize(
    "backend", ["postgres+redis"], indirect=True
)  # two processes share one store
async def test_two_processes_deliver_each_due_notification_once(backend: Backend) -> None:
    """Rooms written to through both processes: one notification per member away and room,
    each arriving once; a member with an inbox socket on one process, or a room socket on
    the other, gets none whichever process took the message."""
    async with run_receiver() as hook:
        # Both messages of a room well within the delay, on a busy machine too.
        env = hook_env(backend, hook.url, MENTEO_NOTIFY_DELAY="2")
        one, two = ServerProcess(env), ServerProcess(env)
        await one.start()
        await two.start()
        try:
            rooms = [
                await create_room(
                    one.url,
                    SERVICE,
                    [
                        ("ben", "Ben", "mentor"),
                        (f"ana{i}", "Ana", "mentee"),
                        (f"cy{i}", "Cy", "mentee"),
                        ("dana", "Dana", "mentee"),
                        ("erin", "Erin", "mentee"),
                    ],
                )
                for i in range(6)
            ]
            # Dana: an inbox socket on process one. Erin: a room socket on process two, in
            # every room (present there whichever process the message goes through).
            await connect_inbox(one.ws, token("dana"))
            for room in rooms:
                await RoomClient.connect(two.ws, room["id"], token("erin"))
            for n, room in enumerate(rooms):
                process = (one, two)[n % 2]
                ben = await RoomClient.connect(process.ws, room["id"], token("ben"))
                await ben.chat(f"{n}-a", "ping")
                await ben.chat(f"{n}-b", "pong")  # within the delay: folded
                await ben.ws.close()
            expected = {
                (f"{who}{i}", room["id"]) for i, room in enumerate(rooms) for who in ("ana", "cy")
            }
            await hook.until(
                lambda r: len(r) >= len(expected), "a notification per member away", 30
            )
            async with outbox_reader(backend.database_url) as states:
                rows = await settled(states, 4 * len(rooms))
            done = {row_id for row_id, _, state in rows if state == "done"}
            cancelled = {user for _, user, state in rows if state == "cancelled"}
            assert cancelled == {"dana", "erin"} and len(done) == len(expected)
            got = [(r.json["user_id"], r.json["room"]["id"]) for r in hook.requests]
            assert sorted(got) == sorted(expected)  # each once
            assert sorted(r.json["id"] for r in hook.requests) == sorted(done)
            assert all(r.json["unread"] == 2 for r in hook.requests)
        finally:
            one.kill()
            two.kill()
