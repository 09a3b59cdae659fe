"""Signed access tokens: JWT with HS256 only.

Claims: ``sub`` (username), ``uid``, ``role``, ``ver`` (the user's token_version: bumping it
revokes older tokens), ``iat``, ``exp`` and ``jti``. Anything else is refused: another
algorithm (``none``, HS512, RS256 ...), a bad signature, a missing claim or an expired token.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import jwt

from loralab.errors import NotAuthenticated
from loralab.settings import EXAMPLE_SECRET, AuthSettings

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
REQUIRED_CLAIMS = ("exp", "iat", "sub", "uid", "role", "ver", "jti")


class TokenSubject(Protocol):
    """What a token is issued for (a ``loralab.infra.db.User`` row fits)."""

    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def token_version(self) -> int: ...


def check_secret(auth: AuthSettings) -> None:
    """ValueError unless the signing secret is at least 32 bytes and not the example value
    (both allowed in ``dev_mode``)."""
    if auth.dev_mode:
        return
    secret = auth.secret_key.get_secret_value()
    if secret == EXAMPLE_SECRET:
        raise ValueError(
            "LORALAB_AUTH__SECRET_KEY is the example value; set a random secret "
            "(python -c 'import secrets; print(secrets.token_urlsafe(48))') "
            "or turn on LORALAB_AUTH__DEV_MODE for development"
        )
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ValueError(
            f"LORALAB_AUTH__SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes "
            f"(it has {len(secret.encode('utf-8'))})"
        )


def issue_token(user: TokenSubject, auth: AuthSettings, now: datetime | None = None) -> str:
    """A signed token for ``user`` valid for ``auth.token_minutes``."""
    issued = now or datetime.now(timezone.utc)
    claims = {
        "sub": user.username,
        "uid": user.id,
        "role": user.role,
        "ver": user.token_version,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(minutes=auth.token_minutes)).timestamp()),
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, auth.secret_key.get_secret_value(), algorithm=ALGORITHM)


def decode_token(token: str, auth: AuthSettings) -> dict[str, Any]:
    """The claims of a valid token; NotAuthenticated for anything forged, expired, tampered,
    malformed or signed with another algorithm."""
    try:
        claims = jwt.decode(
            token,
            auth.secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("token expired") from None
    except jwt.PyJWTError:
        raise NotAuthenticated("invalid token") from None
    if not _claims_well_typed(claims):
        raise NotAuthenticated("invalid token")
    return claims


def _claims_well_typed(claims: dict[str, Any]) -> bool:
    ints = all(
        isinstance(claims[k], int) and not isinstance(claims[k], bool) for k in ("uid", "ver")
    )
    strs = all(isinstance(claims[k], str) for k in ("sub", "role", "jti"))
    return ints and strs
