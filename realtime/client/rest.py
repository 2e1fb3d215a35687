"""REST calls with the client's token (``Authorization: Bearer``), renewed and tried once
more after a 401. Needs ``httpx`` (``pip install "menteo-realtime[client]"``)."""

from __future__ import annotations

from typing import Any

from .errors import ClientError
from .tokens import TokenSource


class ApiError(ClientError):
    """A REST call answered with an error (docs/protocol.md, "REST API")."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


async def request(
    base_url: str,
    tokens: TokenSource,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: float = 10.0,
) -> Any:
    """``method path`` (relative to the server's base URL); the JSON answer (None for 204)."""
    import httpx  # only REST and the event stream need it

    query = {k: v for k, v in (params or {}).items() if v is not None}
    token = await tokens.for_connect()
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
        for again in (True, False):
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            resp = await http.request(
                method, path.lstrip("/"), json=json, params=query, headers=headers
            )
            if resp.status_code == 401 and again and tokens.renewable:
                token = await tokens.renew()
                continue
            break
    if resp.status_code >= 400:
        try:
            error = resp.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http", resp.text[:200]
        raise ApiError(resp.status_code, code, message)
    return resp.json() if resp.content else None
