"""Tokens as the platform signs them (HS256), made here rather than with ``realtime.auth`` so
that the soak can also drive another checkout (``--src``); the claims are the same."""

from __future__ import annotations

import time
from typing import Any

import jwt

# The secret the test suite's servers run with.
SECRET = "test-secret-for-menteo-realtime-0123456789"


def token(
    secret: str,
    user_id: str,
    name: str | None = None,
    ttl: float = 3600,
    role: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "name": name or user_id.title(),
        "iat": now,
        "exp": now + int(ttl),
    }
    if role:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm="HS256")
