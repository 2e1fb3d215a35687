"""Webhook notifications (issue 18, docs/webhooks.md): a real server, a real receiver on a
loopback port, both backends. Waits are on the receiver's requests or on the outbox rows,
never a sleep."""

from __future__ import annotations

import hmac
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from menteo_testkit.waits import wait_until
from menteo_testkit.webhook_receiver import Received, Receiver, run_receiver
from realtime.config import Settings
from realtime.notify import outbox as outbox_sql
from realtime.notify import scheduler
from realtime.notify.signing import verify
from realtime.persistence.events import StoredEvent
from tests.backends import Backend
from tests.client import RoomClient, connect_inbox, create_room
from tests.feed_client import FeedApi, SSEFollower, WSFollower, feed_query
from tests.servers import Running, make_settings, run_server
from tests.test_chat_changes import delete

HOOK_SECRET = "whsec-" + "k" * 40
DELAY = 0.3


@asynccontextmanager
async def notifying(
    backend: Backend, receiver: Receiver | None = None, **overrides: Any
) -> AsyncIterator[tuple[Running, Receiver]]:
    async with run_receiver(receiver) as hook:
        options: dict[str, Any] = {"notify_delay": DELAY, **overrides}
        settings = make_settings(
            backend, webhook_url=hook.url, webhook_secret=HOOK_SECRET, **options
        )
        async with run_server(settings) as server:
            yield server, hook


async def outbox(server: Running) -> list[tuple[str, str, str]]:
    """(user, scope, state) of every outbox row, oldest first."""
    assert server.state is not None

    def read(conn: Any) -> list[tuple[str, str, str]]:
        sql = "SELECT user_id, scope, state FROM webhook_outbox ORDER BY created_at, id"
        return [tuple(r) for r in conn.execute(text(sql))]

    return await server.state.db.run(read)


async def row_state(server: Running, row_id: str, wanted: str) -> None:
    assert server.state is not None
    sql = text("SELECT state FROM webhook_outbox WHERE id = :id")

    async def reached() -> bool:
        assert server.state is not None
        got = await server.state.db.run(lambda c: c.execute(sql, {"id": row_id}).scalar())
        return bool(got == wanted)

    await wait_until(reached, f"outbox row {row_id} to be {wanted}", 15)


async def settled(server: Running, count: int) -> list[tuple[str, str, str]]:
    """Every one of ``count`` rows is past pending and ready (delivered, failed, cancelled)."""
    rows: list[tuple[str, str, str]] = []

    async def done() -> bool:
        rows[:] = await outbox(server)
        return len(rows) == count and all(s not in ("pending", "ready") for _, _, s in rows)

    await wait_until(done, f"{count} outbox rows to settle", 15, state=lambda: rows)
    return rows


def signed(request: Received) -> bool:
    return verify(HOOK_SECRET, request.body, request.headers["menteo-signature"])


async def pair_room(server: Running, title: str = "Ana & Ben") -> dict[str, Any]:
    return await create_room(
        server.url, server.service(), [("ana", "Ana", "mentee"), ("ben", "Ben", "mentor")], title
    )


async def test_three_messages_while_away_make_one_signed_notification(backend: Backend) -> None:
    async with notifying(backend) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        seqs = [await ben.chat(f"b{i}", f"line {i}") for i in range(3)]
        await hook.until(lambda r: len(r) >= 1, "a room.unread")
        assert await settled(server, 1) == [("ana", f"room:{room['id']}", "done")]
        assert len(hook.requests) == 1
        request = hook.requests[0]
        note = request.json
        assert note["type"] == "room.unread" and note["user_id"] == "ana"
        assert note["room"] == {"id": room["id"], "title": "Ana & Ben"}
        assert note["unread"] == 3 and note["first_unread_seq"] == seqs[0]
        last = note["last_message"]
        assert last["type"] == "chat.message" and last["seq"] == seqs[2]
        assert last["body"] == "line 2" and last["id"] == "b2"
        assert last["author"] == {"user_id": "ben", "name": "Ben"}
        assert note["created_at"].endswith("Z") and len(note["id"]) == 32
        assert request.headers["content-type"] == "application/json"
        assert request.headers["menteo-event-id"] == note["id"]
        # The signature, checked by hand as docs/webhooks.md does.
        parts = dict(p.split("=", 1) for p in request.headers["menteo-signature"].split(","))
        assert abs(int(parts["t"]) - time.time()) < 60
        mac = hmac.new(HOOK_SECRET.encode(), parts["t"].encode() + b"." + request.body, "sha256")
        assert hmac.compare_digest(mac.hexdigest(), parts["v1"]) and signed(request)
        assert not verify("x" * 40, request.body, request.headers["menteo-signature"])
        assert not verify(HOOK_SECRET, request.body + b" ", request.headers["menteo-signature"])
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(server.url + "/metrics")).text
        assert 'menteo_webhook_deliveries_total{result="ok"} 1' in metrics
        assert "menteo_webhook_pending" in metrics


@pytest.mark.parametrize("how", ["room socket", "inbox socket", "read"])
async def test_present_or_read_before_the_delay_sends_nothing(backend: Backend, how: str) -> None:
    async with notifying(backend, notify_delay=1.0) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        if how == "room socket":
            await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        elif how == "inbox socket":
            await connect_inbox(server.ws, server.token("ana", "Ana"))
        seq = await ben.chat("b1", "are you there?")
        if how == "read":
            ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
            await ana.send({"type": "read", "seq": seq})
            await ana.recv_until(lambda f: f["type"] == "read.marker" and f["user_id"] == "ana")
            await ana.ws.close()
        assert await settled(server, 1) == [("ana", f"room:{room['id']}", "cancelled")]
        assert hook.requests == []


async def test_messages_within_the_interval_fold_into_the_next_notification(
    backend: Backend,
) -> None:
    async with notifying(backend, notify_interval=600.0) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ben.chat("b1", "first")
        await hook.until(lambda r: len(r) == 1, "the first notification")
        await settled(server, 1)
        await ben.chat("b2", "second, within the interval")
        rows: list[tuple[str, str, str]] = []

        async def waiting() -> bool:
            rows[:] = await outbox(server)
            return len(rows) == 2 and rows[1][2] == "pending"

        await wait_until(waiting, "the second to wait for the interval", state=lambda: rows)
        await ben.chat("b3", "third, folds into it")
        assert len(await outbox(server)) == 2  # folded: no third row
        assert len(hook.requests) == 1


@pytest.mark.parametrize("retry_after", [None, "1"])
async def test_503_twice_then_200_is_delivered_on_the_third_attempt_with_the_same_id(
    backend: Backend, retry_after: str | None
) -> None:
    extra = {"Retry-After": retry_after} if retry_after else {}
    receiver = Receiver(then=[(503, extra), (503, extra)])
    async with notifying(backend, receiver) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ben.chat("b1", "hello?")
        await hook.until(lambda r: len(hook.answered(200)) == 1, "the third attempt", 20)
        assert [r.status for r in hook.requests] == [503, 503, 200]
        ids = {r.headers["menteo-event-id"] for r in hook.requests}
        assert len(ids) == 1 and {r.json["id"] for r in hook.requests} == ids
        assert all(signed(r) for r in hook.requests)
        # Honoured: at least a second between attempts when asked for one.
        if retry_after:
            assert hook.requests[1].at - hook.requests[0].at >= 0.9
        await settled(server, 1)
        assert server.state is not None
        assert server.state.metrics.value("menteo_webhook_deliveries_total", "retry") == 2
        assert server.state.metrics.value("menteo_webhook_deliveries_total", "ok") == 1


async def test_a_hanging_receiver_times_out_and_the_room_keeps_chatting(backend: Backend) -> None:
    receiver = Receiver(hang=True)
    async with notifying(backend, receiver, webhook_timeout=1.0, webhook_max_attempts=1) as (
        server,
        hook,
    ):
        room = await create_room(
            server.url,
            server.service(),
            [("ana", "Ana", "mentee"), ("ben", "Ben", "mentor"), ("cy", "Cy", "mentee")],
        )
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        cy = await RoomClient.connect(server.ws, room["id"], server.token("cy", "Cy"))
        await ben.chat("b0", "Ana is away")
        await hook.until(lambda r: len(r) == 1, "the attempt that hangs")
        # The attempt is held open; the room goes on: every message acked and delivered.
        for i in range(1, 51):
            seq = await ben.chat(f"b{i}", f"message {i}")
            got = await cy.recv_until(
                lambda f, seq=seq: f["type"] == "chat.message" and f["seq"] == seq
            )
            assert got["body"] == f"message {i}"
        assert hook.requests[0].status == 0  # still unanswered meanwhile
        # The timeout ends the attempt: the limit (1) reached, it is failed and listed.
        await row_state(server, hook.requests[0].json["id"], "failed")
        async with httpx.AsyncClient() as http:
            listed = await http.get(
                server.url + "/api/webhooks/failed?limit=5", headers=server.service()
            )
            assert listed.status_code == 200
            (failed,) = listed.json()["failed"]
            assert failed["id"] == hook.requests[0].json["id"] and failed["attempts"] == 1
            assert failed["user_id"] == "ana" and "Timeout" in failed["last_error"]
            member = {"authorization": "Bearer " + server.token("ana", "Ana")}
            assert (
                await http.get(server.url + "/api/webhooks/failed", headers=member)
            ).status_code == 403
            assert (await http.get(server.url + "/api/webhooks/failed")).status_code == 401
            for bad in ("0", "501", "x"):
                resp = await http.get(
                    server.url + f"/api/webhooks/failed?limit={bad}", headers=server.service()
                )
                assert resp.status_code == 400
        assert server.state is not None
        assert server.state.metrics.value("menteo_webhook_deliveries_total", "failed") == 1


async def test_a_4xx_fails_at_once(backend: Backend) -> None:
    async with notifying(backend, Receiver(status=410)) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ben.chat("b1", "hello?")
        assert [s for _, _, s in await settled(server, 1)] == ["failed"]
        assert [r.status for r in hook.requests] == [410]


async def test_a_refusal_is_listed_with_the_start_of_its_answer_only(backend: Backend) -> None:
    """A receiver's answer is read only as far as the error needs (1 KiB): one whose body
    never ends still fails at once with its status, not after the timeout as a retry."""
    receiver = Receiver(status=410, answer=b"gone: " + b"x" * 4096, endless=True)
    async with notifying(backend, receiver, webhook_timeout=30) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ben.chat("b1", "hello?")
        assert [s for _, _, s in await settled(server, 1)] == ["failed"]
        async with httpx.AsyncClient() as http:
            listed = await http.get(
                server.url + "/api/webhooks/failed?limit=5", headers=server.service()
            )
        (failed,) = listed.json()["failed"]
        assert failed["last_error"] == "HTTP 410: gone: " + "x" * 194
        hook.released.set()


async def test_a_comment_on_bens_post_while_he_is_away_notifies_him(backend: Backend) -> None:
    async with notifying(backend) as (server, hook):
        ben = FeedApi(server.url, server.token("ben", "Ben"))
        ana = FeedApi(server.url, server.token("ana", "Ana"))
        service = FeedApi(server.url, server.token("backend", "Backend", role="service"))
        thread = await ben.thread(await service.community())
        post = await ben.post(thread, "Week 3: shipped the parser")
        await ben.comment(post["id"], "his own comment: no notification")
        comment = await ana.comment(post["id"], "Congrats!")
        await hook.until(lambda r: len(r) == 1, "a post.comment")
        assert await settled(server, 1) == [("ben", f"post:{post['id']}", "done")]
        note = hook.requests[0].json
        assert note["type"] == "post.comment" and note["user_id"] == "ben"
        assert note["post_id"] == post["id"] and note["thread_id"] == thread
        assert note["comment"]["id"] == comment["id"]
        assert note["comment"]["body"] == "Congrats!"
        assert note["comment"]["author"] == {"user_id": "ana", "name": "Ana"}
        assert set(note) == {
            "id",
            "type",
            "user_id",
            "post_id",
            "thread_id",
            "comment",
            "created_at",
        }
        assert signed(hook.requests[0])


@pytest.mark.parametrize("how", ["feed socket", "event stream"])
async def test_a_comment_while_the_author_follows_the_feed_sends_nothing(
    backend: Backend, how: str
) -> None:
    async with notifying(backend) as (server, hook):
        ben = FeedApi(server.url, server.token("ben", "Ben"))
        ana = FeedApi(server.url, server.token("ana", "Ana"))
        service = FeedApi(server.url, server.token("backend", "Backend", role="service"))
        thread = await ben.thread(await service.community())
        post = await ben.post(thread, "Week 4")
        query = feed_query(server.token("ben", "Ben"), following=True)
        if how == "feed socket":
            await WSFollower.connect(server.ws, query)
        else:
            await SSEFollower.connect(server.url, query)
        await ana.comment(post["id"], "nice")
        assert [s for _, _, s in await settled(server, 1)] == ["cancelled"]
        assert hook.requests == []


@pytest.mark.parametrize("status", [200, 410])
async def test_a_settled_notification_keeps_no_copy_of_the_words(
    backend: Backend, status: int
) -> None:
    """Delivered or failed, the outbox row drops its body: a message deleted afterwards is
    erased from the database (docs/security.md) with no copy left in the outbox."""
    async with notifying(backend, Receiver(status=status)) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        words = "canary" + "x" * 12
        seq = await ben.chat("b1", words)
        await hook.until(lambda r: len(r) == 1, "a room.unread")
        assert words in hook.requests[0].body.decode()
        await settled(server, 1)
        assert (await delete(ben, "d1", seq))["type"] == "ack"
        assert server.state is not None
        sql = text("SELECT count(*) FROM webhook_outbox WHERE body IS NOT NULL")
        assert await server.state.db.run(lambda c: c.execute(sql).scalar()) == 0


async def test_the_queue_before_the_outbox_is_bounded_for_comments_too(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed comments waiting for the outbox write count against ``MAX_QUEUED`` like
    messages: past it the oldest go, whichever kind they are."""
    monkeypatch.setattr(scheduler, "MAX_QUEUED", 3)
    async with notifying(backend) as (server, _):
        assert server.state is not None and server.state.notifier is not None
        notifier = server.state.notifier
        events = [
            StoredEvent("feed", i, "feed.comment", "ana", "Ana", None, {"post_id": "p"}, "")
            for i in range(1, 11)
        ]
        before = notifier.dropped
        notifier.committed(events)  # synchronous: the flush cannot run in between
        assert len(notifier.messages) + len(notifier.comments) <= 3
        assert notifier.dropped - before == 7


async def test_a_row_held_longer_than_its_lease_is_renewed_not_sent_twice(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt that outlasts the lease (here a receiver that holds the request past a
    0.4 s lease; in production a wait for a connection or a slow outcome write) keeps its
    row: the lease is renewed while the process holds it, so neither this process nor
    another claims it again, and the receiver gets one request."""
    monkeypatch.setattr(scheduler, "LEASE_TIMEOUTS", 0)
    monkeypatch.setattr(scheduler, "LEASE_MARGIN", 0.4)
    receiver = Receiver(hang=True)
    async with notifying(backend, receiver) as (server, hook):
        assert server.state is not None
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ben.chat("b1", "still there?")
        await hook.until(lambda r: len(r) == 1, "the first attempt")
        first = hook.requests[0].at
        sql = text("SELECT next_at FROM webhook_outbox WHERE id = :id")
        row_id = hook.requests[0].json["id"]

        async def renewed_thrice() -> bool:
            assert server.state is not None
            at = await server.state.db.run(lambda c: c.execute(sql, {"id": row_id}).scalar())
            return float(at) > first + 3 * 0.4

        await wait_until(renewed_thrice, "the held row's lease renewed three times", 15)
        assert len(hook.requests) == 1
        receiver.released.set()
        await row_state(server, row_id, "done")
        assert len(hook.requests) == 1


async def test_a_message_committed_without_its_outbox_row_is_notified_after_a_start(
    backend: Backend,
) -> None:
    """A process killed with -9 between a message's commit and its outbox write left no row:
    the next start finds the recent messages no row covers and queues them again. Here the
    first server has no webhook at all, so nothing was written; the second, started with
    one, notifies Ana once, and a message Cy read meanwhile notifies no one."""
    async with run_server(make_settings(backend)) as first:
        members = [("ana", "Ana", "mentee"), ("ben", "Ben", "mentor"), ("cy", "Cy", "mentee")]
        room = await create_room(first.url, first.service(), members, "Ana & Ben")
        ben = await RoomClient.connect(first.ws, room["id"], first.token("ben", "Ben"))
        seq = await ben.chat("b1", "are you there?")
        cy = await RoomClient.connect(first.ws, room["id"], first.token("cy", "Cy"))
        await cy.send({"type": "read", "seq": seq})
        await cy.recv_until(lambda f: f["type"] == "read.marker", what="Cy's marker stored")
        await ben.ws.close()
        await cy.ws.close()
    async with notifying(backend) as (server, hook):
        await hook.until(lambda r: len(r) >= 1, "the recovered notification")
        body = hook.requests[0].json
        assert (body["user_id"], body["room"]["id"], body["unread"]) == ("ana", room["id"], 1)
        assert signed(hook.requests[0])
        await settled(server, 2)  # Ana's sent, Cy's cancelled (read)
        assert [(r.json["user_id"], r.json["id"]) for r in hook.requests] == [("ana", body["id"])]


async def test_the_start_up_scan_is_not_crowded_out_by_rooms_with_old_messages_only(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rooms whose messages are older than the scan's window (from before the webhook was
    configured, or a lone member's) never get an outbox row: they are behind for good. The
    scan looks at a bounded number of rooms; those must not take the places of a room with
    a recent message no row covers. Here the bound is 2 and two such rooms sort first."""
    monkeypatch.setattr(outbox_sql, "RECOVER_ROOMS", 2)
    async with run_server(make_settings(backend)) as first:
        rooms = sorted([await pair_room(first) for _ in range(3)], key=lambda r: str(r["id"]))
        for i, room in enumerate(rooms):
            ben = await RoomClient.connect(first.ws, room["id"], first.token("ben", "Ben"))
            await ben.chat(f"b{i}", "hello")
            await ben.ws.close()
        assert first.state is not None
        old = text("UPDATE event SET ts = '2020-01-01T00:00:00.000Z' WHERE stream = :room")
        async with first.state.db.write() as conn:
            for room in rooms[:2]:
                await conn.execute(old, {"room": room["id"]})
    async with notifying(backend) as (_server, hook):
        await hook.until(lambda r: len(r) >= 1, "the recent room's notification")
        body = hook.requests[0].json
        assert (body["user_id"], body["room"]["id"]) == ("ana", rooms[2]["id"])


async def test_the_start_up_scan_reads_a_bounded_part_of_a_long_history(tmp_path: Path) -> None:
    """A room with no outbox row yet (webhooks just turned on) and a long history: the scan
    reads its newest messages, not all of them to find the recent few (counted in SQLite's
    VM steps: deterministic, unlike a time)."""
    path = tmp_path / "menteo.db"
    settings = Settings.from_env({}, database_url=f"sqlite+aiosqlite:///{path}", secret="s" * 40)
    async with run_server(settings) as first:
        room = await pair_room(first)
    conn = sqlite3.connect(path)
    last = conn.execute("SELECT last_seq FROM stream WHERE id = ?", (room["id"],)).fetchone()[0]
    old = "2020-01-01T00:00:00.000Z"
    history = [
        (room["id"], last + i, "chat.message", "ben", "Ben", None, '{"body": "x"}', old)
        for i in range(1, 20_001)
    ]
    conn.executemany("INSERT INTO event VALUES (?, ?, ?, ?, ?, ?, ?, ?)", history)
    conn.execute("UPDATE stream SET last_seq = ? WHERE id = ?", (last + 20_000, room["id"]))
    conn.commit()
    async with run_server(settings) as second:
        ben = await RoomClient.connect(second.ws, room["id"], second.token("ben", "Ben"))
        await ben.chat("recent", "are you there?")
        await ben.ws.close()
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(step, 1_000)
    since = datetime.fromtimestamp(time.time() - 60, UTC).isoformat().replace("+00:00", "Z")
    messages, _ = outbox_sql.uncovered_sync(conn, since)
    conn.close()
    assert [(r, a) for r, _, a, _ in messages] == [(room["id"], "ben")]
    assert steps < 10, f"{steps} thousand VM steps for one recent message"


async def test_a_recovered_message_waits_for_the_members_to_come_back_after_a_start(
    backend: Backend,
) -> None:
    """A message the start-up scan queues again may be past its due time already (the
    server was down longer than the delay). Judged at once, its reader, back within a
    second of the start like every client, would be away to the judge: a notification for
    a message she had on her screen. It is due the delay after the start at the earliest."""
    async with run_server(make_settings(backend)) as first:
        room = await pair_room(first)
        ana = await RoomClient.connect(first.ws, room["id"], first.token("ana", "Ana"))
        ben = await RoomClient.connect(first.ws, room["id"], first.token("ben", "Ben"))
        await ben.chat("b1", "are you there?")
        await ana.recv_until(lambda f: f["type"] == "chat.message", what="Ben's message")
        assert first.state is not None
        ago = datetime.fromtimestamp(time.time() - 120, UTC).isoformat(timespec="milliseconds")
        aged = text("UPDATE event SET ts = :ts WHERE stream = :room AND type = 'chat.message'")
        async with first.state.db.write() as conn:  # down for two minutes, past the delay
            await conn.execute(aged, {"ts": ago.replace("+00:00", "Z"), "room": room["id"]})
    async with notifying(backend, notify_delay=3.0) as (server, hook):
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        assert await settled(server, 1) == [("ana", f"room:{room['id']}", "cancelled")]
        assert hook.requests == []
        await ana.ws.close()


async def test_a_retry_after_the_message_was_deleted_does_not_send_its_words(
    backend: Backend,
) -> None:
    """A body is frozen at the due time; a message deleted (erased) before a retry is sent
    as it is now: the receiver, down at the first attempt, never gets the words."""
    receiver = Receiver(hang=True, then=[(503, {"Retry-After": "1"})])
    async with notifying(backend, receiver) as (server, hook):
        room = await pair_room(server)
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        words = "canary" + "x" * 12
        seq = await ben.chat("b1", words)
        await hook.until(lambda r: len(r) == 1, "the first attempt")
        assert words in hook.requests[0].body.decode()
        assert (await delete(ben, "d1", seq))["type"] == "ack"
        receiver.released.set()  # the first attempt is answered 503 now, after the delete
        await hook.until(lambda r: len(r) == 2, "the retry", 20)
        retry = hook.requests[1]
        assert words not in retry.body.decode()
        assert retry.json["last_message"]["deleted"] is True and signed(retry)
        assert retry.json["id"] == hook.requests[0].json["id"]
        await settled(server, 1)


async def test_a_retry_after_the_comment_was_deleted_does_not_send_its_words(
    backend: Backend,
) -> None:
    receiver = Receiver(hang=True, then=[(503, {"Retry-After": "1"})])
    async with notifying(backend, receiver) as (server, hook):
        ben = FeedApi(server.url, server.token("ben", "Ben"))
        ana = FeedApi(server.url, server.token("ana", "Ana"))
        service = FeedApi(server.url, server.token("backend", "Backend", role="service"))
        post = await ben.post(await ben.thread(await service.community()), "Week 3")
        words = "canary" + "y" * 12
        comment = await ana.comment(post["id"], words)
        await hook.until(lambda r: len(r) == 1, "the first attempt")
        assert words in hook.requests[0].body.decode()
        await ana.ok("DELETE", f"/api/posts/{post['id']}/comments/{comment['id']}")
        receiver.released.set()
        await hook.until(lambda r: len(r) == 2, "the retry", 20)
        retry = hook.requests[1]
        assert words not in retry.body.decode() and signed(retry)
        assert retry.json["comment"] == {
            "id": comment["id"],
            "post_id": post["id"],
            "deleted": True,
        }
        await settled(server, 1)
