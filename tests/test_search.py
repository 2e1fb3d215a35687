"""Full-text search over room history: words with stemming, the last word as a prefix,
membership, edits and deletes followed, bounded queries, pages, and the migration that
indexes messages stored before it."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from alembic import command
from sqlalchemy import Connection, text

from realtime.persistence.database import Database, alembic_config
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server
from tests.test_chat_changes import MEMBERS, delete, edit
from tests.test_migrations import migrate_command

ARTICLE = "Ana sent that article about <b>window functions</b> in SQL"


async def get(server: Running, path: str, token: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(
            server.url + path, params=params, headers={"authorization": "Bearer " + token}
        )


async def found(server: Running, path: str, token: str, q: str, **params: Any) -> list[int]:
    """The seqs found, newest first (the answer's order is best match first)."""
    resp = await get(server, path, token, q=q, **params)
    assert resp.status_code == 200, resp.text
    return sorted((r["seq"] for r in resp.json()["results"]), reverse=True)


async def test_words_are_found_by_stem_and_the_last_by_prefix(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    article = await ana.chat("m1", ARTICLE)
    await ana.chat("m2", "unrelated: see you on Thursday")
    path, token = f"/api/rooms/{room['id']}/search", server.token("ben", "Ben")
    for q in ("articles", "function", "windo", "window funct", "ARTICLE about Wind", "sql"):
        assert await found(server, path, token, q) == [article], q
    for q in ("articl window xyz", "thursday article", "indow"):
        assert await found(server, path, token, q) == [], q
    resp = await get(server, path, token, q="articles wind")
    hit = resp.json()["results"][0]
    assert resp.json()["has_more"] is False
    assert {k: hit[k] for k in ("seq", "id", "author", "body")} == {
        "seq": article,
        "id": "m1",
        "author": {"user_id": "ana", "name": "Ana"},
        "body": ARTICLE,  # as written: text, never HTML
    }
    assert hit["ts"].endswith("Z")
    assert "«article»" in hit["snippet"] and "«window»" in hit["snippet"], hit["snippet"]


async def test_search_follows_edits_and_deletes(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    path, token = f"/api/rooms/{room['id']}/search", server.token("ana", "Ana")
    before = await ana.chat("m1", "the meeting is on Tuesday")
    after = await ana.chat("m2", "the agenda for Tuesday")
    assert await found(server, path, token, "tuesday") == [after, before]  # now indexed
    await edit(ana, "e1", before, "the meeting moved to Wednesday")
    assert await found(server, path, token, "tuesday") == [after]
    assert await found(server, path, token, "wednesday") == [before]
    await delete(ana, "d1", after)
    assert await found(server, path, token, "tuesday") == []
    assert await found(server, path, token, "agenda") == []
    # Not yet indexed when changed: indexed as it is at the next search.
    late = await ana.chat("m3", "a note about Friday")
    await edit(ana, "e2", late, "a note about Saturday")
    gone = await ana.chat("m4", "Friday it is")
    await delete(ana, "d2", gone)
    assert await found(server, path, token, "friday") == []
    assert await found(server, path, token, "saturday") == [late]


async def test_search_respects_membership(server: Running, room: dict[str, Any]) -> None:
    other = await create_room(server.url, server.service(), [("cy", "Cy", "mentor")])
    third = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
    cy = await RoomClient.connect(server.ws, other["id"], server.token("cy", "Cy"))
    await cy.chat("c1", "the budget spreadsheet is private")
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    mine = await ana.chat("a1", "the budget for the course")
    ana3 = await RoomClient.connect(server.ws, third["id"], server.token("ana", "Ana"))
    also = await ana3.chat("a2", "a budget question")
    token = server.token("ana", "Ana")

    resp = await get(server, f"/api/rooms/{other['id']}/search", token, q="budget")
    assert resp.status_code == 403 and "spreadsheet" not in resp.text
    assert (await get(server, "/api/rooms/nope/search", token, q="budget")).status_code == 404
    resp = await get(server, "/api/search", token, q="budget")
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert sorted((r["room_id"], r["seq"]) for r in results) == sorted(
        [(room["id"], mine), (third["id"], also)]
    )
    assert "spreadsheet" not in resp.text
    assert (await get(server, "/api/search", server.token("zed"), q="budget")).json() == {
        "results": [],
        "has_more": False,
    }
    service = server.service()["authorization"].removeprefix("Bearer ")
    assert (await get(server, "/api/search", service, q="budget")).status_code == 403
    assert await found(server, f"/api/rooms/{other['id']}/search", service, "budget") == [1]


async def test_queries_are_bounded_and_never_reach_the_index_as_syntax(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    seq = await ana.chat("m1", 'NEAR the window, "quoted" AND star*')
    path, token = f"/api/rooms/{room['id']}/search", server.token("ana", "Ana")
    for q in ('"', "(", "*", "!!!", "", "   ", "_", '"*"'):
        resp = await get(server, path, token, q=q)
        assert resp.status_code == 400, (q, resp.text)
        assert resp.json()["error"] == {
            "code": "invalid",
            "message": "'q' has no word to search for (letters or digits)",
        }
    resp = await get(server, path, token, q="w" * 201)
    assert resp.status_code == 400 and "at most 200" in resp.text
    assert (await get(server, "/api/search", token, q="x" * 201)).status_code == 400
    assert (await get(server, path, token)).status_code == 400  # no q at all
    for q in ("NEAR(", '"quoted', "NEAR(window", "window*", "AND", "star OR", 'wind"ow', "{x}:y"):
        resp = await get(server, path, token, q=q)
        assert resp.status_code == 200, (q, resp.text)
    assert await found(server, path, token, "NEAR(window") == [seq]
    assert await found(server, path, token, '"quoted" AND') == [seq]
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"before": "0"}):
        assert (await get(server, path, token, q="window", **params)).status_code == 400, params


async def test_pages_are_the_newest_matches_best_first(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    seqs = [await ana.chat(f"m{i}", f"lesson {i}: recursion") for i in range(5)]
    best = await ana.chat("m5", "recursion, recursion and more recursion")
    await ana.chat("m6", "no match here")
    path, token = f"/api/rooms/{room['id']}/search", server.token("ana", "Ana")
    resp = (await get(server, path, token, q="recursion", limit=3)).json()
    assert resp["has_more"] is True
    page = [r["seq"] for r in resp["results"]]
    assert sorted(page) == [seqs[3], seqs[4], best]  # the newest three matches
    assert page[0] == best  # the best of them first
    older = (await get(server, path, token, q="recursion", limit=3, before=min(page))).json()
    assert sorted(r["seq"] for r in older["results"]) == seqs[:3]
    assert older["has_more"] is False


async def test_searches_are_rate_limited_per_user(backend: Backend) -> None:
    settings = make_settings(backend, search_rate_per_second=0.01, search_burst=2)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        path, token = f"/api/rooms/{room['id']}/search", server.token("ana", "Ana")
        assert (await get(server, path, token, q="a")).status_code == 200
        assert (await get(server, "/api/search", token, q="a")).status_code == 200
        refused = await get(server, path, token, q="a")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        assert (await get(server, path, server.token("ben"), q="a")).status_code == 200
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(server.url + "/metrics")).text
        assert 'menteo_limit_hits_total{limit="search_rate"} 1' in metrics


def _old_schema(conn: Connection) -> None:
    command.upgrade(alembic_config(conn), "0006")
    rows = [
        ("INSERT INTO stream (id, last_seq, created_at) VALUES ('r1', 3, 'now')", {}),
        ("INSERT INTO room (id, title, created_at) VALUES ('r1', 'Old', 'now')", {}),
        ("INSERT INTO member VALUES ('r1', 'ana', 'Ana', 'mentor')", {}),
    ]
    for sql, params in rows:
        conn.execute(text(sql), params)
    for seq, body in ((1, "an older note about indexes"), (2, "hello"), (3, "indexing again")):
        conn.execute(
            text(
                "INSERT INTO event (stream, seq, type, author_id, author_name, client_id, data, ts)"
                " VALUES ('r1', :seq, 'chat.message', 'ana', 'Ana', :cid, :data, :ts)"
            ),
            {
                "seq": seq,
                "cid": f"c{seq}",
                "data": orjson.dumps({"body": body}).decode(),
                "ts": f"2026-01-01T00:00:0{seq}.000Z",
            },
        )


async def test_migrate_indexes_the_messages_stored_before_it(backend: Backend) -> None:
    db = Database(backend.database_url)
    async with db.write_engine.connect() as conn:
        await conn.run_sync(_old_schema)
        await conn.commit()
    await db.close()
    result = migrate_command(backend.database_url)
    assert result.returncode == 0, result.stderr
    async with run_server(make_settings(backend)) as server:
        path, token = "/api/rooms/r1/search", server.token("ana", "Ana")
        assert await found(server, path, token, "index") == [3, 1]
        assert await found(server, path, token, "hello") == [2]
        ana = await RoomClient.connect(server.ws, "r1", token)
        assert await ana.chat("c4", "new after the migration: indexes") == 4
        assert await found(server, path, token, "indexes") == [4, 3, 1]
