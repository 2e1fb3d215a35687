"""The handshake's bookkeeping when the peer goes while it is checked.

A process that stops (SIGTERM) closes the sockets still in their handshake, and a client
may hang up at any moment: the server's ``send`` of the accept then raises uvicorn's
``ClientDisconnected``, an ``OSError``. It was taken for the database being unavailable:
a "closed 1013: the database is unavailable" warning per socket, counted as refused for
``unavailable``, and a 1013 sent to nobody. Here the server's side is real (the door, the
token check, the slots, the metrics); the peer is an ASGI channel that has gone, exactly as
uvicorn reports it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from uvicorn.protocols.utils import ClientDisconnected

from menteo_testkit.tokens import SECRET, token
from realtime.auth import Principal, Tokens
from realtime.metrics import Metrics
from realtime.sockets.admission import AddressSlots, Admission, Door, Rules, Shutdown


async def _grant(principal: Principal, query: dict[str, list[str]], scope: dict[str, Any]) -> str:
    return "granted"


def _door() -> tuple[Door, Metrics, AddressSlots]:
    metrics = Metrics()
    slots = AddressSlots(limit=4, metrics=metrics)
    return Door(Tokens(SECRET), (), slots, metrics, Shutdown()), metrics, slots


async def _receive() -> dict[str, Any]:
    return {"type": "websocket.connect"}


def _scope() -> dict[str, Any]:
    return {
        "type": "websocket",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "query_string": f"token={token(SECRET, 'ana')}".encode(),
        "subprotocols": [],
    }


@pytest.mark.parametrize("gone", ["at the accept", "while served"])
async def test_a_peer_gone_is_not_a_busy_database(
    gone: str, caplog: pytest.LogCaptureFixture
) -> None:
    door, metrics, slots = _door()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if gone == "at the accept":
            raise ClientDisconnected  # what uvicorn raises once the connection is closed

    with caplog.at_level(logging.WARNING, logger="menteo.socket"):
        async with Admission(door, Rules("room", _grant), _scope(), _receive, send) as admitted:
            if gone == "at the accept":
                assert admitted is None
            else:
                assert admitted is not None and admitted.grant == "granted"
                assert metrics.open["room"] == 1
                raise ClientDisconnected  # a send of the socket's own found the peer gone
    assert [m["type"] for m in sent] == ["websocket.accept"]  # no 1013 after it
    assert metrics.counters[("menteo_sockets_refused_total", "unavailable")] == 0
    assert "database is unavailable" not in caplog.text
    assert slots.counts["127.0.0.1"] == 0  # its address slot was given back
    assert metrics.open["room"] == 0
