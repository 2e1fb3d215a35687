"""Logs as an operator's pipeline reads them: MENTEO_LOG_FORMAT=json against a real server
process. Every line is a JSON object; every line written for one request or socket carries
its id; no token and no room content appears in either format."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

from realtime import logs
from realtime.auth import issue_token
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi, SSEFollower, WSFollower, feed_query
from tests.notes_client import NotesClient
from tests.servers import SECRET, ServerProcess, process_env

CHAT = "my salary is 1234567 per year"
NOTE = "private note 7654321"
POST = "growth post body 5551234"
MALFORMED_NOTES = b"\x00\x02\xff\xff\xff\xff\xff"  # a sync update that does not decode
GRACEFUL = (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled


def token(user: str, role: str | None = None) -> str:
    return issue_token(SECRET, user, user.title(), role=role)


async def exercise(server: ServerProcess) -> dict[str, Any]:
    """One of everything that logs: REST calls, a room socket, a notes socket (one bad
    message), a feed socket and an event stream. Returns what the test looks for."""
    service = {"authorization": "Bearer " + token("svc", "service")}
    room = await create_room(
        server.url, service | {"x-request-id": "deploy-42"}, [("ana", "Ana", "mentor")]
    )
    # A header that is not a sane id is replaced, never copied into the logs.
    await create_room(
        server.url, service | {"x-request-id": "evil\tid " + "x" * 80}, [("ben", "Ben", "mentee")]
    )
    ana = await RoomClient.connect(server.ws, room["id"], token("ana"))
    await ana.chat("c1", CHAT)
    await ana.close()

    notes = await NotesClient.connect(server.ws, room["id"], token("ana"))
    await notes.wait_synced()
    notes.text += NOTE
    await notes.ws.send(MALFORMED_NOTES)  # refused with 1007, and logged
    assert await notes.close_code() == 1007
    await notes.close()

    community = await FeedApi(server.url, token("svc", "service")).community()
    author = FeedApi(server.url, token("ana"))
    thread = await author.thread(community)
    ws = await WSFollower.connect(server.ws, feed_query(token("cy"), community))
    sse = await SSEFollower.connect(server.url, feed_query(token("dee"), community))
    post = await author.post(thread, POST)
    # Not waiting for the post's delivery: on the shared Redis of a developer machine another
    # suite's server publishes on the same `feed` channel and can take its seq first.
    for follower in (ws, sse):
        await follower.close()
    return {"room": room["id"], "post": post["id"], "ana": token("ana")}


def by_request(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "request_id" in record:
            grouped[record["request_id"]].append(record)
    return grouped


def socket_id(records: list[dict[str, Any]], opened: str, ended: str) -> str:
    """The id on a socket's opening line, checked against its closing line."""
    (first,) = [r for r in records if opened in r["message"]]
    (last,) = [r for r in records if ended in r["message"] and r["logger"] == "menteo.access"]
    assert first["request_id"] == last["request_id"], (first, last)
    return str(first["request_id"])


async def test_json_lines_carry_request_ids_and_no_tokens_or_content(backend: Backend) -> None:
    server = ServerProcess(process_env(backend, MENTEO_LOG_FORMAT="json"))
    await server.start()
    try:
        seen = await exercise(server)
        assert await server.stop() in GRACEFUL
    finally:
        server.kill()
    output = "".join(server.output)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    for record in records:
        assert {"ts", "level", "logger", "message"} <= record.keys(), record

    room = seen["room"]
    ids = {
        "room": socket_id(
            records, f'"WebSocket /rooms/{room}/ws?token=***" [accepted]', f'/rooms/{room}/ws"'
        ),
        "notes": socket_id(
            records,
            f'"WebSocket /rooms/{room}/notes?token=***" [accepted]',
            f'/rooms/{room}/notes"',
        ),
        "feed": socket_id(records, '"WebSocket /feed/ws?token=***', '"WebSocket /feed/ws"'),
        "sse": socket_id(records, '"GET /feed/stream?token=***', '"GET /feed/stream"'),
    }
    assert len(set(ids.values())) == 4  # one id per connection
    grouped = by_request(records)
    for name, request_id in ids.items():
        paths = {r["path"] for r in grouped[request_id]}
        assert len(paths) == 1, (name, paths)  # no other request's line shares the id
    # Our own lines written while serving a socket carry its id too.
    (bad,) = [r for r in records if r["message"].startswith("malformed notes message")]
    assert bad["request_id"] == ids["notes"]

    # REST: uvicorn's access line, as fields, with the proxy's X-Request-ID.
    created = [r for r in records if r.get("method") == "POST" and r.get("target") == "/api/rooms"]
    assert [r["status"] for r in created] == [201, 201]
    assert created[0]["request_id"] == "deploy-42"
    assert created[1]["request_id"] != "deploy-42" and "evil" not in output

    assert seen["ana"] not in output and "token=***" in output
    for content in (CHAT, NOTE, POST, "1234567", "7654321", "5551234"):
        assert content not in output, content


async def test_text_lines_carry_the_id_too(tmp_path: Path) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}")
    server = ServerProcess(process_env(backend))
    await server.start()
    try:
        service = {"authorization": "Bearer " + token("svc", "service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        ana = await RoomClient.connect(server.ws, room["id"], token("ana"))
        await ana.chat("c1", CHAT)
        await ana.close()
        assert await server.stop() in GRACEFUL
    finally:
        server.kill()
    lines = "".join(server.output).splitlines()
    opened = [line for line in lines if f"/rooms/{room['id']}/ws?token=***" in line]
    ended = [line for line in lines if f'/rooms/{room["id"]}/ws" ended after' in line]
    assert len(opened) == 1 and len(ended) == 1, lines
    request_id = opened[0].split("[", 1)[1].split("]", 1)[0]
    assert f"[{request_id}]" in ended[0]
    assert CHAT not in "\n".join(lines)


async def test_a_traceback_stays_one_redacted_json_line() -> None:
    """The formatter itself: a multi-line traceback quoting a token is one line, redacted,
    and a line logged inside a bound request carries its id (a task it starts too)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RedactTokens())
    handler.addFilter(logs.WithContext())
    logger = logging.getLogger("menteo.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:

        async def request() -> None:
            logs.bind({"type": "http", "path": "/x", "headers": [(b"x-request-id", b"r-1")]})
            try:
                raise RuntimeError("refused /rooms/r/ws?token=abc.def.ghi\nsecond line")
            except RuntimeError:
                logger.exception("failed for token=abc.def.ghi", extra={"room": "r"})
            await asyncio.create_task(_log_later(logger))

        await asyncio.create_task(request())
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    failed, later, outside = (json.loads(line) for line in lines)
    assert failed["message"] == "failed for token=***" and failed["room"] == "r"
    assert "token=***" in failed["exc"] and "abc.def.ghi" not in lines[0]
    assert failed["request_id"] == later["request_id"] == "r-1" and failed["path"] == "/x"
    assert "request_id" not in outside


async def _log_later(logger: logging.Logger) -> None:
    logger.warning("from a task the request started")
