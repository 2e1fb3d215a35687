"""The token a client runs on, and how it gets a new one: ``get_token()``, the caller's
callback (sync or async), asked when the server says the token expires (``auth.expiring``),
before a reconnect with a token about to expire, and after a 4401 close."""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import TokenError

TokenGetter = Callable[[], str | Awaitable[str]]

STALE_BEFORE = 10.0  # seconds: a token with less left is renewed before a socket opens
GET_TOKEN_TIMEOUT = 30.0  # seconds: a get_token that takes longer failed (tried again later)


def token_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: only to know when it expires and whose it is (the
    server verifies it; the client trusts these for nothing else). ``{}`` when unreadable."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class TokenSource:
    """The current token; renewed through ``get_token`` when there is one."""

    def __init__(
        self,
        token: str | None,
        get_token: TokenGetter | None,
        renew_before: float = STALE_BEFORE,
    ) -> None:
        if token is None and get_token is None:
            raise TypeError("a token or get_token is needed")
        self.token = token
        self.get_token = get_token
        self.renew_before = renew_before
        self._renewing: asyncio.Future[str] | None = None

    @property
    def renewable(self) -> bool:
        return self.get_token is not None

    @property
    def expires_at(self) -> float | None:
        exp = token_claims(self.token).get("exp") if self.token else None
        return float(exp) if isinstance(exp, int | float) else None

    @property
    def user_id(self) -> str | None:
        sub = token_claims(self.token).get("sub") if self.token else None
        return sub if isinstance(sub, str) else None

    def stale(self) -> bool:
        """Expires within ``renew_before`` seconds."""
        expires_at = self.expires_at
        return expires_at is not None and expires_at - time.time() < self.renew_before

    async def for_connect(self) -> str:
        """The token to open a socket with: renewed first when it is missing or about to
        expire and a ``get_token`` can renew it."""
        if self.token is None or (self.renewable and self.stale()):
            return await self.renew()
        return self.token

    async def renew(self) -> str:
        """A new token from ``get_token``; callers at the same time share one call."""
        if self._renewing is None:
            self._renewing = asyncio.ensure_future(self._fetch())
        renewing = self._renewing
        try:
            return await asyncio.shield(renewing)
        finally:
            if renewing.done() and self._renewing is renewing:
                self._renewing = None

    async def _fetch(self) -> str:
        if self.get_token is None:
            raise TokenError("the token cannot be renewed (no get_token)")
        async with asyncio.timeout(GET_TOKEN_TIMEOUT):
            got = self.get_token()
            token = await got if inspect.isawaitable(got) else got
        if not isinstance(token, str) or not token:
            raise TokenError(f"get_token returned {type(token).__name__}, not a token")
        self.token = token
        return token
