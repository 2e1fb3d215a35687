from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.client import create_room
from tests.servers import Running, make_settings, run_server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}"


@pytest.fixture
async def server(sqlite_url: str) -> AsyncIterator[Running]:
    async with run_server(make_settings(sqlite_url)) as running:
        yield running


@pytest.fixture
async def room(server: Running) -> dict[str, Any]:
    return await create_room(
        server.url,
        server.service(),
        [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")],
        title="Ana & Ben",
    )
