"""Tokens never reach a log line, however the query spells the parameter.

Query parameter names are decoded before they are matched (``?%74oken=JWT`` authenticates
like ``?token=JWT``), so redaction decodes them too: every parameter whose name decodes to
a token's is redacted, in uvicorn's access and error lines, in ours, in tracebacks and
stacks, in both log formats. Read from the real server's output."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from realtime.auth import issue_token
from tests.backends import Backend
from tests.client import create_room
from tests.feed_client import FeedApi, SSEFollower, WSFollower, close_all
from tests.servers import SECRET, ServerProcess, make_settings, process_env, run_server

GRACEFUL = (0, -signal.SIGTERM)


def token(user: str, role: str | None = None) -> str:
    return issue_token(SECRET, user, user.title(), role=role)


async def first_message(url: str) -> bytes:
    """Open a socket, read its first message (it was accepted), close it."""
    async with websockets.connect(url, open_timeout=10, compression=None) as ws:
        message = await asyncio.wait_for(ws.recv(), 10)
    return message if isinstance(message, bytes) else message.encode()


def secret_parts(jwt: str) -> list[str]:
    """What must not appear: the token, and its signature on its own."""
    return [jwt, jwt.rsplit(".", 1)[1]]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_tokens_in_any_spelling_of_the_parameter_stay_out_of_access_lines(
    tmp_path: Path, fmt: str
) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}")
    server = ServerProcess(process_env(backend, MENTEO_LOG_FORMAT=fmt))
    await server.start()
    used: list[str] = []
    try:
        service = {"authorization": "Bearer " + token("svc", "service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        community = await FeedApi(server.url, token("svc", "service")).community()
        # Spellings the app decodes to ``token`` (they authenticate) ...
        ana = token("ana")
        used.append(ana)
        # Raw URLs: the query goes on the wire exactly as spelled here.
        for path in (
            f"/rooms/{room['id']}/ws?%74oken={ana}&since=0",
            f"/rooms/{room['id']}/notes?t%6Fken={ana}",
        ):
            first = await first_message(server.ws + path)
            assert path.count("/ws?") == 0 or b"welcome" in first, first  # authenticated
        cy = token("cy")
        used.append(cy)
        feed = await WSFollower.connect(server.ws, f"community={community}&%74%6F%6B%65%6E={cy}")
        await feed.close()
        dee = token("dee")
        used.append(dee)
        stream = await SSEFollower.connect(server.url, f"tok%65n={dee}&community={community}")
        assert stream.status == 200
        await close_all()
        # ... and ones it does not, which are redacted all the same: double-encoded, another
        # case, a name that ends in "token", and a token quoted inside another parameter.
        async with httpx.AsyncClient(base_url=server.url) as http:
            for i, template in enumerate(
                (
                    "/api/communities?%2574oken={}",
                    "/api/communities?TOKEN={}",
                    "/api/communities?x=1&access_token={}",
                    "/api/communities?next=%2Fa%3Ftoken%3D{}",
                )
            ):
                other = token(f"u{i}")
                used.append(other)
                await http.get(template.format(other))
        assert await server.stop() in GRACEFUL
    finally:
        server.kill()
    output = "".join(server.output)
    for jwt in used:
        for part in secret_parts(jwt):
            assert part not in output, (part, output)
    # The lines are there, redacted, with the spelling each request used.
    for spelled in ("%74oken=***", "t%6Fken=***", "%74%6F%6B%65%6E=***", "tok%65n=***"):
        assert spelled in output, spelled
    assert "%2574oken=***" in output and "TOKEN=***" in output
    assert "access_token=***" in output
    if fmt == "json":
        for line in output.splitlines():
            json.loads(line)  # still one JSON object per line


class _Leaky:
    """An object whose text holds a URL with a token (a request, a URL object)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"<Request {self.url}>"

    __str__ = __repr__


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_error_lines_tracebacks_and_our_own_lines_are_redacted(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], fmt: str
) -> None:
    """The server's own handlers (uvicorn's configuration, as ``serve`` installs it), fed
    the kinds of line that can quote a URL: an exception's text and traceback, an argument
    that is not a string, an ``extra=`` field, a stack, a Bearer header."""
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}")
    jwt = token("ana")
    url = f"/rooms/r1/ws?since=1&%74oken={jwt}"
    async with run_server(make_settings(backend, log_format=fmt)):
        capfd.readouterr()
        error = logging.getLogger("uvicorn.error")
        ours = logging.getLogger("menteo.rooms")
        try:
            raise RuntimeError(f"handshake failed for {url}")
        except RuntimeError:
            error.exception("Exception in ASGI application for %s", url)
            ours.error("refused %r", _Leaky(url), exc_info=True)
        ours.warning("request %s", _Leaky(url), extra={"target": url}, stack_info=True)
        ours.warning("headers: %s", {"authorization": f"Bearer {jwt}"})
        ours.warning("dict args %(u)s", {"u": url})
        output = capfd.readouterr().err
    assert "handshake failed for /rooms/r1/ws?since=1&%74oken=***" in output, output
    for part in secret_parts(jwt):
        assert part not in output, output
    assert output.count("%74oken=***") >= 6
    assert "Bearer ***" in output
    if fmt == "json":
        lines: list[dict[str, Any]] = [json.loads(line) for line in output.splitlines()]
        assert any("exc" in line for line in lines)
        assert any(line.get("target", "").endswith("%74oken=***") for line in lines)
