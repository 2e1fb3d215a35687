from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import Backend, make_backend
from tests.client import RoomClient, create_room
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while RoomClient.opened:
        await RoomClient.opened.pop().ws.close()
    while NotesClient.opened:
        await NotesClient.opened.pop().close()


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every test that takes this runs on both: the embedded default and production's."""
    return await make_backend(request.param, tmp_path)


@pytest.fixture
async def server(backend: Backend) -> AsyncIterator[Running]:
    async with run_server(make_settings(backend)) as running:
        yield running


@pytest.fixture
async def room(server: Running) -> dict[str, Any]:
    return await create_room(
        server.url,
        server.service(),
        [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")],
        title="Ana & Ben",
    )
