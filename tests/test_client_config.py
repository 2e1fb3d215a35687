"""GET /api/client-config: what a page checks its ``token_url`` against before it opens."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.backends import make_backend
from tests.servers import make_settings, run_server


async def test_the_pages_learn_the_allowed_origins_without_a_token(tmp_path: Path) -> None:
    backend = await make_backend("sqlite", tmp_path)
    origins = ("https://app.example", "https://admin.example")
    async with (
        run_server(make_settings(backend, allowed_origins=origins)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        resp = await http.get("/api/client-config")
    assert resp.status_code == 200
    assert resp.json() == {"allowed_origins": list(origins)}
