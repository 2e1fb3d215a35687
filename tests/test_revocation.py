"""Token revocation (issue 16, item 4): by user (every token issued before the moment) or by
token id; stored, loaded at start, bounded; open connections end within a second (the
two-process case is in test_access_scale_out.py); tokens carry iat, jti, aud and iss."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import jwt
import pytest
from sqlalchemy import func, insert, select

from realtime.access.revocations import TABLE
from realtime.auth import Tokens
from tests.access_client import bearer, call, revoke, within
from tests.backends import Backend
from tests.client import RoomClient, close_code, create_room
from tests.notes_client import NotesClient
from tests.servers import SECRET, Running, make_settings, run_server


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def reply(cid: str) -> Any:
    return lambda f: f.get("type") in ("auth.refreshed", "error") and f.get("id") == cid


async def rest_status(server: Running, token: str, room_id: str) -> int:
    return (await call(server.url, bearer(token), "GET", f"/api/rooms/{room_id}")).status_code


async def test_one_token_is_revoked_by_its_id_and_refresh_follows_the_token(
    server: Running, room: dict[str, Any]
) -> None:
    room_id, service = room["id"], server.service()
    first, second = server.token("ben"), server.token("ben")
    assert claims(first)["jti"] != claims(second)["jti"]
    one = await RoomClient.connect(server.ws, room_id, first)
    two = await RoomClient.connect(server.ws, room_id, second)
    notes = await NotesClient.connect(server.ws, room_id, first)
    await notes.synced.wait()

    body = {"jti": claims(first)["jti"], "exp": claims(first)["exp"]}
    assert (await revoke(server.url, service, **body)).status_code == 204
    codes, _ = await within(1.0, one.closed_with(), notes.close_code())
    assert codes == [4401, 4401]
    assert await rest_status(server, first, room_id) == 401
    assert await rest_status(server, second, room_id) == 200
    assert await close_code(server.ws, f"/rooms/{room_id}/ws?token={first}") == 4401

    # The revoked token cannot be refreshed onto a socket; a new one can, and a later
    # revocation of the socket's old token then leaves it alone: it holds the new one.
    await two.send({"type": "auth.refresh", "id": "r1", "token": first})
    refused = await two.recv_until(reply("r1"))
    assert refused["type"] == "error" and refused["code"] == "invalid"
    assert "revoked" in refused["message"]
    third = server.token("ben")
    await two.send({"type": "auth.refresh", "id": "r2", "token": third})
    assert (await two.recv_until(reply("r2")))["type"] == "auth.refreshed"
    body = {"jti": claims(second)["jti"], "exp": claims(second)["exp"]}
    assert (await revoke(server.url, service, **body)).status_code == 204
    await two.send({"type": "ping", "id": "p1"})
    assert (await two.recv_until(lambda f: f["type"] == "pong"))["id"] == "p1"
    body = {"jti": claims(third)["jti"], "exp": claims(third)["exp"]}
    assert (await revoke(server.url, service, **body)).status_code == 204
    assert (await within(1.0, two.closed_with()))[0] == [4401]


async def test_a_users_revocation_covers_tokens_without_iat_and_spares_later_ones(
    server: Running, room: dict[str, Any]
) -> None:
    room_id = room["id"]
    bare = jwt.encode(
        {"sub": "ben", "name": "Ben", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256"
    )
    before = server.token("ben")
    ana = server.token("ana")
    assert await rest_status(server, bare, room_id) == 200
    assert (await revoke(server.url, server.service(), user_id="ben")).status_code == 204
    after = server.token("ben")  # minted right after: its iat is later than the moment
    assert await rest_status(server, bare, room_id) == 401  # no iat: issued at 0
    assert await rest_status(server, before, room_id) == 401
    assert await rest_status(server, after, room_id) == 200
    assert await rest_status(server, ana, room_id) == 200  # another user's
    # Revoking again later moves the moment forward: ``after`` goes too.
    assert (await revoke(server.url, server.service(), user_id="ben")).status_code == 204
    assert await rest_status(server, after, room_id) == 401


async def test_revocations_are_stored_and_loaded_at_start(backend: Backend) -> None:
    settings = make_settings(backend)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ben", "Ben", "mentee")])
        cy = await create_room(server.url, server.service(), [("cy", "Cy", "mentee")])
        ben, cy_token = server.token("ben"), server.token("cy")
        assert (await revoke(server.url, server.service(), user_id="ben")).status_code == 204
        body = {"jti": claims(cy_token)["jti"], "exp": claims(cy_token)["exp"]}
        assert (await revoke(server.url, server.service(), **body)).status_code == 204
    async with run_server(settings) as again:
        assert await rest_status(again, ben, room["id"]) == 401
        assert await rest_status(again, cy_token, cy["id"]) == 401
        assert await close_code(again.ws, f"/rooms/{room['id']}/ws?token={ben}") == 4401
        assert await rest_status(again, again.token("cy"), cy["id"]) == 200


async def test_the_list_is_bounded_and_lapsed_revocations_are_pruned(backend: Backend) -> None:
    async with run_server(make_settings(backend, max_revocations=3)) as server:
        service = server.service()
        assert server.state is not None
        async with server.state.db.write() as db:  # a revoked token that has expired since
            row = {"kind": "jti", "subject": "old", "issued_before": 0.0, "expires_at": 1.0}
            await db.execute(insert(TABLE).values(**row))
        soon = time.time() + 600
        for body in ({"user_id": "ben"}, {"jti": "t1", "exp": soon}, {"jti": "t2", "exp": soon}):
            assert (await revoke(server.url, service, **body)).status_code == 204, body
        full = await revoke(server.url, service, jti="t3", exp=soon)
        assert full.status_code == 409 and full.json()["error"]["code"] == "too_many_revocations"
        # Moving a user's moment forward, or a token already expired, takes no new row.
        assert (await revoke(server.url, service, user_id="ben")).status_code == 204
        assert (await revoke(server.url, service, jti="t4", exp=time.time() - 5)).status_code == 204
        async with server.state.db.read() as db:
            subjects = set((await db.execute(select(TABLE.c.subject))).scalars())
            count = (await db.execute(select(func.count()).select_from(TABLE))).scalar()
        assert subjects == {"ben", "t1", "t2"} and count == 3  # "old" was pruned


async def test_revoke_is_service_only_and_validated(server: Running) -> None:
    service, member = server.service(), bearer(server.token("ana"))
    assert (await revoke(server.url, member, user_id="ben")).status_code == 403
    exp = time.time() + 60
    for body in (
        {},
        {"user_id": "ben", "jti": "x", "exp": exp},
        {"jti": "x"},
        {"jti": "x", "exp": True},
        {"jti": "x", "exp": "soon"},
        {"jti": "", "exp": exp},
        {"jti": "x" * 129, "exp": exp},
        {"user_id": "ben\n"},
        {"user_id": 5},
    ):
        resp = await revoke(server.url, service, **body)
        assert resp.status_code == 400, (body, resp.text)


async def test_audience_and_issuer_are_required_when_set(backend: Backend) -> None:
    settings = make_settings(backend, token_audience="menteo-rt", token_issuer="platform")
    async with run_server(settings) as server:
        tokens = Tokens(SECRET, "menteo-rt", "platform")
        service = bearer(tokens.issue("backend", "Backend", role="service"))
        room = await create_room(server.url, service, [("ben", "Ben", "mentee")])
        good = tokens.issue("ben", "Ben")
        assert await rest_status(server, good, room["id"]) == 200
        member = await RoomClient.connect(server.ws, room["id"], good)
        assert member.welcome["you"]["user_id"] == "ben"
        for bad in (
            server.token("ben"),  # neither
            Tokens(SECRET, "menteo-rt").issue("ben", "Ben"),  # no issuer
            Tokens(SECRET, "other", "platform").issue("ben", "Ben"),
            Tokens(SECRET, "menteo-rt", "someone").issue("ben", "Ben"),
        ):
            assert await rest_status(server, bad, room["id"]) == 401
            assert await close_code(server.ws, f"/rooms/{room['id']}/ws?token={bad}") == 4401


@pytest.mark.parametrize("audience", ["", "menteo-rt"])
def test_the_token_command_sets_iat_jti_and_the_servers_audience(audience: str) -> None:
    env = {
        **os.environ,
        "MENTEO_SECRET": SECRET,
        "MENTEO_TOKEN_AUDIENCE": audience,
        "MENTEO_TOKEN_ISSUER": "platform" if audience else "",
    }
    printed = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-m", "realtime.cli", "token", "ben", "--name", "Ben"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        printed.append(out.stdout.strip().splitlines()[-1])
    first, second = (claims(t) for t in printed)
    assert abs(first["iat"] - time.time()) < 60 and first["exp"] > first["iat"]
    assert first["jti"] != second["jti"] and len(first["jti"]) >= 16
    if audience:
        assert (first["aud"], first["iss"]) == ("menteo-rt", "platform")
        Tokens(SECRET, "menteo-rt", "platform").verify(printed[0])
    else:
        assert "aud" not in first and "iss" not in first


async def test_a_longest_lifetime_caps_tokens_and_lets_a_users_revocation_lapse(
    backend: Backend,
) -> None:
    async with run_server(make_settings(backend, token_max_lifetime=3600)) as server:
        service = server.service()
        room = await create_room(server.url, service, [("ben", "Ben", "mentee")])
        bare = jwt.encode(
            {"sub": "ben", "name": "Ben", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
        )
        assert await rest_status(server, server.token("ben", ttl=7200), room["id"]) == 401
        assert await rest_status(server, bare, room["id"]) == 401  # no iat: lives since 1970
        assert await rest_status(server, server.token("ben"), room["id"]) == 200
        assert (await revoke(server.url, service, user_id="ben")).status_code == 204
        assert server.state is not None
        async with server.state.db.write() as db:
            row = (await db.execute(select(TABLE).where(TABLE.c.subject == "ben"))).one()
            assert row.expires_at == pytest.approx(row.issued_before + 3600)
            # A user's revocation whose tokens have all expired since: pruned next time.
            lapsed = {"kind": "user", "subject": "cy", "issued_before": 2.0, "expires_at": 1.0}
            await db.execute(insert(TABLE).values(**lapsed))
        assert (
            await revoke(server.url, service, jti="t1", exp=time.time() + 60)
        ).status_code == 204
        async with server.state.db.read() as db:
            subjects = set((await db.execute(select(TABLE.c.subject))).scalars())
        assert subjects == {"ben", "t1"}
