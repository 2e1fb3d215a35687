"""JWT tokens (HS256 only) and the principal they name."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt

from .protocol import has_control

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096  # a token larger than this is refused before decoding
MAX_CLAIM = 128  # characters of ``sub`` and ``jti``


class AuthError(Exception):
    """The token is missing, malformed, expired, revoked or signed with another key."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str
    is_service: bool = False
    expires_at: float = 0.0
    # When the token was issued (``iat``; 0 without one) and its id (``jti``), which a
    # revocation names (access/revocations.py).
    issued_at: float = 0.0
    token_id: str | None = None


def issue_token(
    secret: str,
    user_id: str,
    name: str,
    *,
    role: str | None = None,
    ttl: float = 3600,
    audience: str = "",
    issuer: str = "",
) -> str:
    """A token as ``menteo-realtime token`` prints it: ``iat`` to the millisecond (a
    revocation refuses the tokens issued before its moment, and one minted just after it
    must pass) and a random ``jti`` (one token can be revoked alone)."""
    now = round(time.time(), 3)
    claims: dict[str, object] = {
        "sub": user_id,
        "name": name,
        "iat": now,
        "exp": int(now) + int(ttl),
        "jti": secrets.token_urlsafe(16),
    }
    if role:
        claims["role"] = role
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(
    secret: str, token: str | None, *, audience: str = "", issuer: str = ""
) -> Principal:
    """The token's principal. With ``audience``/``issuer`` the token must carry that
    ``aud``/``iss``; without, a token that names an audience is refused (PyJWT's rule)."""
    if not token:
        raise AuthError("missing token")
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("token too large")
    required = ["exp", "sub"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinned: never trust the header's alg
            audience=audience or None,
            issuer=issuer or None,
            options={"require": required},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(str(exc)) from None
    sub, name = claims.get("sub"), claims.get("name", "")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_CLAIM:
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
        issued_at=_issued_at(claims),
        token_id=_token_id(claims),
    )


def _issued_at(claims: dict[str, object]) -> float:
    """``iat`` as a number (PyJWT takes anything ``int()`` takes, a string included); a
    token without one counts as issued at 0, so every revocation of its user covers it."""
    iat = claims.get("iat", 0)
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise AuthError("bad 'iat' claim: a number is required")
    return float(iat)


def _token_id(claims: dict[str, object]) -> str | None:
    jti = claims.get("jti")
    if jti is None:
        return None
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_CLAIM or has_control(jti):
        raise AuthError("bad 'jti' claim: a string of 1..128 characters, no control character")
    return jti


def _never(principal: Principal) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Tokens:
    """How this server checks a token everywhere (sockets, streams, REST, ``auth.refresh``):
    the secret, the audience and issuer it requires, and whether a revocation covers it."""

    secret: str
    audience: str = ""
    issuer: str = ""
    revoked: Callable[[Principal], bool] = field(default=_never)
    max_lifetime: float = 0.0  # seconds from ``iat`` to ``exp``; 0: any

    def verify(self, token: str | None) -> Principal:
        principal = verify_token(self.secret, token, audience=self.audience, issuer=self.issuer)
        lifetime = principal.expires_at - principal.issued_at  # no ``iat``: issued at 0
        if self.max_lifetime and lifetime > self.max_lifetime:
            raise AuthError(f"token lives longer than {self.max_lifetime:g} s (exp - iat)")
        if self.revoked(principal):
            raise AuthError("token revoked")
        return principal

    def issue(self, user_id: str, name: str, *, role: str | None = None, ttl: float = 3600) -> str:
        return issue_token(
            self.secret,
            user_id,
            name,
            role=role,
            ttl=ttl,
            audience=self.audience,
            issuer=self.issuer,
        )


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
