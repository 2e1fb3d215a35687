"""The Python client (``realtime.client``) against a real server: the room client resumes
across server restarts (kill -9 and SIGTERM) losing and duplicating nothing, a durable
outbox resends what a dead process left without duplicating it, tokens are renewed through
``get_token``, and the README's example bot runs as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from menteo_testkit.faultproxy import FaultProxy
from menteo_testkit.waits import wait_event, wait_until, within
from realtime.auth import issue_token
from realtime.client import (
    FrameRefused,
    Outbox,
    Overflow,
    Pending,
    Refused,
    RoomClient,
    backoff_delay,
    socket_target,
    token_claims,
)
from tests.backends import Backend, make_backend
from tests.client import RoomClient as RawClient
from tests.client import create_room
from tests.servers import SECRET, Running, ServerProcess, process_env

ROOT = Path(__file__).resolve().parent.parent
QUICK = (0.05, 0.5)  # backoff: the tests' servers come back within a second or two


def token(user_id: str, name: str | None = None, **kw: Any) -> str:
    return issue_token(SECRET, user_id, name or user_id.title(), **kw)


def service() -> dict[str, str]:
    return {"authorization": "Bearer " + token("backend", "Backend", role="service")}


async def acked(pending: list[Pending], what: str, timeout: float = 30) -> list[int]:
    return await within(asyncio.gather(*(p.wait() for p in pending)), what, timeout)


async def stored_messages(url: str, room_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{url}/api/rooms/{room_id}/messages", params={"limit": 100}, headers=service()
        )
    assert resp.status_code == 200, resp.text
    messages: list[dict[str, Any]] = resp.json()["messages"]
    return messages


async def test_room_client_resumes_across_restarts_losing_and_duplicating_nothing(
    backend: Backend,
) -> None:
    server = ServerProcess(process_env(backend))
    await server.start()
    ana = ben = None
    try:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, service(), members)
        seen: dict[str, list[int]] = {"ana": [], "ben": []}
        ana = RoomClient(server.url, room["id"], token=token("ana"), backoff=QUICK)
        ben = RoomClient(server.url, room["id"], token=token("ben"), backoff=QUICK)
        for name, client in (("ana", ana), ("ben", ben)):
            client.on("chat.message", lambda f, name=name: seen[name].append(f["seq"]))
            await client.start()
        sent = [ana.send_message(f"m{i}") for i in range(10)]
        await acked(sent, "the first ten acks")

        # kill -9 with messages in flight: some stored and acked, some stored with the ack
        # lost, some never read; then more written while the server is down.
        sent += [ana.send_message(f"m{i}") for i in range(10, 20)]
        await within(sent[10].wait(), "the first ack of the second batch")
        server.kill()
        sent += [ana.send_message(f"m{i}") for i in range(20, 30)]
        server = ServerProcess(process_env(backend), port=server.port)
        await server.start()
        await acked(sent, "every message acked after a kill -9 and a restart")

        # SIGTERM (the sockets close 1012) with messages in flight, and more written while
        # the server drains and while it is down.
        sent += [ana.send_message(f"m{i}") for i in range(30, 35)]
        await within(sent[30].wait(), "the first ack of the fourth batch")
        stopping = asyncio.create_task(server.stop())
        sent += [ana.send_message(f"m{i}") for i in range(35, 38)]
        await stopping
        sent += [ana.send_message(f"m{i}") for i in range(38, 40)]
        server = ServerProcess(process_env(backend), port=server.port)
        await server.start()
        await acked(sent, "every message acked after a SIGTERM and a restart")

        seqs = [p.seq for p in sent]
        assert sorted(seqs) == list(range(1, 41)), seqs
        stored = await stored_messages(server.url, room["id"])
        assert sorted(m["body"] for m in stored) == sorted(f"m{i}" for i in range(40))
        assert [m["seq"] for m in stored] == list(range(1, 41))
        for name in ("ana", "ben"):
            await wait_until(
                lambda name=name: len(seen[name]) >= 40,
                f"{name}'s client to see the 40 messages",
                state=lambda name=name: seen[name],
            )
            assert seen[name] == list(range(1, 41)), (name, seen[name])
        # Ana's acks needed every server; Ben may have slept through the short-lived second.
        assert ana.connections >= 3 and ben.connections >= 2
        assert ben.welcome is not None and ben.welcome["recovered"] is True
        assert ana.pending() == []
    finally:
        for client in (ana, ben):
            if client is not None:
                await client.close()
        server.kill()


async def test_a_durable_outbox_resends_what_a_dead_process_left_without_duplicating(
    server: Running, room: dict[str, Any], tmp_path: Path
) -> None:
    # A bot wrote two messages to its outbox file and died: the server had stored the
    # first (its ack never arrived), the second it never got.
    path = tmp_path / "ana.outbox.json"
    before = Outbox(path)
    before.add({"type": "chat.send", "id": "crash-1", "body": "stored before the crash"})
    before.add({"type": "chat.send", "id": "crash-2", "body": "never sent"})
    raw = await RawClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert await raw.chat("crash-1", "stored before the crash") == 1
    await raw.close()

    # The next run resumes after seq 1, so crash-1 reaches the server again: the server
    # acks it with its seq, stores nothing new.
    async with RoomClient(
        server.url, room["id"], token=server.token("ana", "Ana"), outbox=path,
        since=1, epoch=raw.welcome["epoch"],
    ) as ana:  # fmt: skip
        assert [p.id for p in ana.pending()] == ["crash-1", "crash-2"]
        assert await acked(ana.pending(), "the outbox file's two acks") == [1, 2]
    assert json.loads(path.read_text()) == []
    stored = await stored_messages(server.url, room["id"])
    assert [(m["seq"], m["id"], m["body"]) for m in stored] == [
        (1, "crash-1", "stored before the crash"),
        (2, "crash-2", "never sent"),
    ]


async def test_operations_refused_for_good_leave_the_outbox(
    server: Running, room: dict[str, Any]
) -> None:
    async with RoomClient(server.url, room["id"], token=server.token("ben", "Ben")) as ben:
        step = ben.checklist.add("Learn SQL", item_id="sql")
        assert await step == 1
        assert await ben.checklist.toggle("sql") == 2
        with pytest.raises(FrameRefused) as refused:
            await ben.checklist.verify("sql")  # only the mentor verifies
        assert refused.value.code == "forbidden"
        with pytest.raises(ValueError, match="blank"):
            ben.send_message("   ")
        assert ben.pending() == []
        assert ben.you == {"user_id": "ben", "name": "Ben", "role": "mentee"}


async def test_get_token_answers_auth_expiring_and_the_socket_outlives_its_first_token(
    server: Running, room: dict[str, Any]
) -> None:
    # A token shorter than MENTEO_AUTH_EXPIRING_BEFORE (60 s) is warned about at once
    # (renew_before=0: the client opens with it rather than renewing it first).
    first = server.token("ana", "Ana", ttl=3)
    calls: list[str] = []

    async def get_token() -> str:
        calls.append("ana")
        return server.token("ana", "Ana", ttl=600)

    refreshed: list[dict[str, Any]] = []
    got = asyncio.Event()
    async with RoomClient(
        server.url, room["id"], token=first, get_token=get_token, renew_before=0
    ) as ana:
        ana.on("auth.refreshed", lambda frame: (refreshed.append(frame), got.set()))
        await wait_event(got, "auth.refreshed for the token from get_token")
        assert ana.tokens.token != first
        assert refreshed[0]["expires_at"] == _iso(token_claims(ana.tokens.token)["exp"])
        expiry = float(token_claims(first)["exp"])
        # The first token's expiry is what is tested: its 4401 would have come by now.
        await wait_until(lambda: time.time() > expiry + 1, "the first token's expiry to pass")
        assert await ana.send_message("still here") == 1
        assert ana.connections == 1 and ana.state == "live"
    assert calls == ["ana"]


async def test_a_refused_token_is_renewed_once_then_the_client_stops(
    server: Running, room: dict[str, Any]
) -> None:
    forged = issue_token("not-the-server-secret-0123456789abcdef", "ana", "Ana")
    calls: list[str] = []

    def good() -> str:
        calls.append("good")
        return server.token("ana", "Ana")

    async with RoomClient(server.url, room["id"], token=forged, get_token=good) as ana:
        assert ana.connections == 1 and calls == ["good"]  # 4401, then a new token

    no_renewal = RoomClient(server.url, room["id"], token=forged)
    with pytest.raises(Refused) as refused:
        await no_renewal.start()
    assert refused.value.code == 4401

    def forged_again() -> str:
        calls.append("forged")
        return forged

    renewed_badly = RoomClient(server.url, room["id"], token=forged, get_token=forged_again)
    with pytest.raises(Refused) as refused:
        await renewed_badly.start()
    assert refused.value.code == 4401 and calls == ["good", "forged"]
    stranger = RoomClient(server.url, room["id"], token=server.token("cy", "Cy"))
    with pytest.raises(Refused) as refused:
        await stranger.start()
    assert refused.value.code == 4403


async def test_a_handshake_refused_while_the_server_drains_is_tried_again(
    server: Running, room: dict[str, Any]
) -> None:
    # What SIGTERM does first: the process refuses new sockets with HTTP 403 while it
    # drains. (The server's own flag, set here without stopping the process.)
    assert server.state is not None
    server.state.shutdown.draining = True
    refusals = asyncio.Event()
    codes: list[int | None] = []

    def on_state(state: str, detail: dict[str, Any]) -> None:
        if state == "reconnecting" and "code" in detail:
            codes.append(detail["code"])
            refusals.set()

    ana = RoomClient(server.url, room["id"], token=server.token("ana", "Ana"),
                     on_state=on_state, backoff=QUICK)  # fmt: skip
    starting = asyncio.create_task(ana.start())
    try:
        await wait_event(refusals, "the client to be refused while the server drains")
        assert codes[0] == 403 and not starting.done()
        server.state.shutdown.draining = False  # another process, or this one restarted
        await within(starting, "the client to connect once the server takes sockets")
        assert ana.state == "live"
    finally:
        await ana.close()


async def test_the_room_client_moves_on_a_hand_off_and_is_never_away(tmp_path: Path) -> None:
    """A rolling restart behind a balancer: the balancer stops sending new sockets to A, A
    gets SIGTERM, and each client asked to ``reconnect`` opens its next socket (to B)
    while A still serves it, then closes the old one: no state but "live" after the first
    welcome, every message stored once and seen once in order by the other client, and no
    socket left for A to close with 1012."""
    backend = await make_backend("postgres+redis", tmp_path)  # two processes: Redis
    env = process_env(backend, MENTEO_DRAIN_HANDOFF="10", MENTEO_DRAIN_RATE="10")
    a, b = ServerProcess(env), ServerProcess(env)
    await a.start()
    await b.start()
    balancer = FaultProxy(a.port)
    await balancer.start()
    clients: list[RoomClient] = []
    try:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(a.url, service(), members)
        url = f"http://127.0.0.1:{balancer.port}"
        states: list[str] = []
        seen: list[int] = []
        for user in ("ana", "ben"):
            client = RoomClient(url, room["id"], token=token(user), backoff=QUICK,
                                on_state=lambda state, _: states.append(state))  # fmt: skip
            clients.append(client)
        ana, ben = clients
        ben.on("chat.message", lambda f: seen.append(f["seq"]))
        for client in clients:
            await client.start()
        sent = [ana.send_message(f"m{i}") for i in range(10)]
        await acked(sent, "the first ten acks")

        balancer.upstream_port = b.port  # A leaves the balancer, then gets SIGTERM
        stopping = asyncio.create_task(a.stop(timeout=30))
        sent += [ana.send_message(f"m{i}") for i in range(10, 20)]  # some during the move
        await wait_until(
            lambda: ana.moves == 1 and ben.moves == 1,
            "both clients to move",
            state=lambda: (ana.moves, ben.moves, states, a.output[-6:]),
        )
        sent += [ana.send_message(f"m{i}") for i in range(20, 30)]
        await acked(sent, "every message acked across the move")
        assert await stopping in (0, -signal.SIGTERM)
        assert any("2 handed off (0 of them closed 1012" in line for line in a.output), a.output

        assert "reconnecting" not in states, states
        assert sorted(p.seq for p in sent) == list(range(1, 31))
        stored = await stored_messages(b.url, room["id"])
        assert [m["body"] for m in stored] == [f"m{i}" for i in range(30)]
        await wait_until(lambda: len(seen) >= 30, "Ben to see the 30 messages", state=lambda: seen)
        assert seen == list(range(1, 31))
        assert sorted(ben.presence.online) == ["ana", "ben"]  # nobody left meanwhile
    finally:
        for client in clients:
            await client.close()
        await balancer.close()
        a.kill()
        b.kill()


def _iso(exp: int) -> str:
    return datetime.fromtimestamp(exp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def readme_example() -> str:
    """The README's example bot: the first Python block of its "Python client" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python client", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README: no python block in the Python client section"
    return match.group(1)


async def test_the_readme_example_bot_runs_as_written(
    server: Running, room: dict[str, Any], tmp_path: Path
) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 14, "the README promises a short example"
    script = tmp_path / "bot.py"
    script.write_text(code)
    # The bot is a member of the room (the service adds one the way the platform would).
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{server.url}/api/rooms",
            json={
                "title": "With a bot",
                "members": [
                    {"user_id": "ana", "name": "Ana", "role": "mentor"},
                    {"user_id": "bot", "name": "Bot", "role": "mentee"},
                ],
            },
            headers=server.service(),
        )
    room_id = resp.json()["id"]
    env = {
        **os.environ,
        "MENTEO_URL": server.url,
        "MENTEO_ROOM": room_id,
        "MENTEO_TOKEN": server.token("bot", "Bot"),
        "PYTHONPATH": str(ROOT),
    }
    bot = await asyncio.create_subprocess_exec(sys.executable, str(script), env=env)
    try:
        async with RoomClient(server.url, room_id, token=server.token("ana", "Ana")) as ana:
            joined = asyncio.Event()
            ana.on("presence.join", lambda f: f["user_id"] == "bot" and joined.set())
            if "bot" not in ana.presence.online:
                await wait_event(joined, "the bot to join the room", 20)
            replies = ana.events("chat.message")
            await ana.send_message("!ping")
            reply = await within(
                _first(replies, lambda f: f["author"]["user_id"] == "bot"), "the bot's answer"
            )
            assert reply["body"] == "pong, Ana"
            await ana.send_message("!bye")
            assert await within(bot.wait(), "the bot to leave on !bye", 20) == 0
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()


async def _first(events: Any, pred: Any) -> dict[str, Any]:
    async for frame in events:
        if pred(frame):
            return frame
    raise AssertionError("the room client ended")


def test_backoff_and_socket_target() -> None:
    # The first retry after a live socket (or a 1012) goes at once, jittered by up to 0.1 s.
    assert backoff_delay(0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(0, rand=lambda: 1.0) == 0.1
    assert [backoff_delay(n, rand=lambda: 0.0) for n in range(1, 5)] == [0.25, 0.5, 1.0, 2.0]
    assert backoff_delay(40, rand=lambda: 1.0) == 30.0  # capped
    assert 0.25 <= backoff_delay(1) <= 0.5  # equal jitter: between half and all
    target = socket_target("https://chat.example.com/rt", "rooms/r1/ws", "T", {"since": None})
    assert target.url == "wss://chat.example.com/rt/rooms/r1/ws"  # no token in the URL
    assert target.subprotocols == ("menteo.v1.json", "menteo.token.T")


async def test_events_iterators_end_on_overflow_and_handlers_cannot_break_the_reader() -> None:
    from realtime.client.events import Dispatcher
    from realtime.client.sse import SSEParser

    hub = Dispatcher()
    calls: list[int] = []
    hub.on("chat.message", lambda f: 1 / 0)  # an application's bug: logged, not raised
    hub.on("*", lambda f: calls.append(f["seq"]))
    slow = hub.events(("chat.message",), maxsize=2)
    other = hub.events((), maxsize=10)
    with pytest.raises(TypeError):
        hub.on("x", _async_handler)
    for seq in (1, 2, 3):
        hub.dispatch({"type": "chat.message", "seq": seq})
    assert calls == [1, 2, 3]
    assert [await slow.__anext__(), await slow.__anext__()] == [
        {"type": "chat.message", "seq": 1},
        {"type": "chat.message", "seq": 2},
    ]
    with pytest.raises(Overflow):
        await slow.__anext__()
    hub.end(None)
    assert [f["seq"] async for f in other] == [1, 2, 3]

    parser = SSEParser()
    lines = ["id: e:7", "event: feed.post", 'data: {"a":', "data: 1}", "", ": heartbeat", ""]
    got = [m for m in map(parser.line, lines) if m is not None]
    assert [(m.id, m.event, m.data) for m in got] == [("e:7", "feed.post", '{"a":\n1}')]


async def _async_handler(frame: dict[str, Any]) -> None:
    pass
