"""REST calls that change access (members, archive, revocations), and a stopwatch for the
"closed within 1 second" promises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


async def call(
    base_url: str, headers: dict[str, str], method: str, path: str, json: Any = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return await http.request(method, path, json=json, headers=headers)


async def put_member(
    base_url: str, headers: dict[str, str], room_id: str, user: str, name: str, role: str
) -> httpx.Response:
    body = {"name": name, "role": role}
    return await call(base_url, headers, "PUT", f"/api/rooms/{room_id}/members/{user}", body)


async def delete_member(
    base_url: str, headers: dict[str, str], room_id: str, user: str
) -> httpx.Response:
    return await call(base_url, headers, "DELETE", f"/api/rooms/{room_id}/members/{user}")


async def patch_room(
    base_url: str, headers: dict[str, str], room_id: str, **changes: Any
) -> httpx.Response:
    return await call(base_url, headers, "PATCH", f"/api/rooms/{room_id}", changes)


async def revoke(base_url: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await call(base_url, headers, "POST", "/api/tokens/revoke", body)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": "Bearer " + token}


async def within(seconds: float, *waits: Awaitable[T]) -> tuple[list[T], float]:
    """Every wait's result, all of them within ``seconds`` (else TimeoutError), and how long
    they took."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        results = await asyncio.gather(*waits)
    return list(results), time.monotonic() - started
