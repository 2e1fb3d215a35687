"""JWT tokens (HS256 only) and the principal they name."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from .protocol import has_control

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096  # a token larger than this is refused before decoding


class AuthError(Exception):
    """The token is missing, malformed, expired or signed with another key."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str
    is_service: bool = False
    expires_at: float = 0.0


def issue_token(
    secret: str, user_id: str, name: str, *, role: str | None = None, ttl: float = 3600
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "name": name, "iat": now, "exp": now + int(ttl)}
    if role:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None) -> Principal:
    if not token:
        raise AuthError("missing token")
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("token too large")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinned: never trust the header's alg
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(str(exc)) from None
    sub, name = claims.get("sub"), claims.get("name", "")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise AuthError("bad 'sub' claim: a string of 1..128 characters is required")
    if not isinstance(name, str):
        raise AuthError("bad 'name' claim: a string is required")
    # Claims are text the issuer did not check: both reach every member's frames (and
    # Redis presence entries), so each must encode and stay one line.
    for claim, value in (("sub", sub), ("name", name)):
        if has_control(value):
            raise AuthError(f"bad '{claim}' claim: control character or lone surrogate")
    return Principal(
        user_id=sub,
        name=name[:128] or sub,
        is_service=claims.get("role") == "service",
        expires_at=float(claims["exp"]),
    )


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
