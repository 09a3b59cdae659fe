"""Password hashing and signed tokens."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from loralab.errors import NotAuthenticated
from loralab.settings import EXAMPLE_SECRET, AuthSettings
from loralab.users.passwords import hash_password, needs_rehash, verify_password
from loralab.users.tokens import check_secret, decode_token, issue_token

SECRET = "s" * 64
AUTH = AuthSettings(secret_key=SecretStr(SECRET), token_minutes=5)


@dataclass
class FakeUser:
    id: int = 7
    username: str = "alice"
    role: str = "user"
    token_version: int = 3


def test_hash_and_verify() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password("not a hash", "x")
    assert not needs_rehash(hashed)
    assert needs_rehash("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")


def test_unknown_user_costs_the_same_work() -> None:
    hashed = hash_password("some password 1")
    start = time.perf_counter()
    assert not verify_password(hashed, "wrong password 1")
    known = time.perf_counter() - start
    start = time.perf_counter()
    assert not verify_password(None, "wrong password 1")
    unknown = time.perf_counter() - start
    assert unknown > known / 4  # a real Argon2 verify, not an early return


def test_token_round_trip_has_the_claims() -> None:
    claims = decode_token(issue_token(FakeUser(), AUTH), AUTH)
    assert (claims["sub"], claims["uid"], claims["role"], claims["ver"]) == ("alice", 7, "user", 3)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"] != decode_token(issue_token(FakeUser(), AUTH), AUTH)["jti"]


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    base = {"sub": "alice", "uid": 7, "role": "admin", "ver": 3, "iat": now,
            "exp": now + 300, "jti": "x"}  # fmt: skip
    return {**base, **changes}


def _rsa_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jwt.encode(_claims(), pem, algorithm="RS256")


def _tampered() -> str:
    header, _, signature = _segments(issue_token(FakeUser(), AUTH))
    return ".".join([header, _b64(_claims(role="admin")), signature])


def _alg_none() -> str:
    return ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(_claims()), ""])


BAD_TOKENS = {
    "forged (other secret)": lambda: jwt.encode(_claims(), "x" * 48, algorithm="HS256"),
    "expired": lambda: issue_token(
        FakeUser(), AUTH, now=datetime.now(timezone.utc) - timedelta(minutes=6)
    ),
    "tampered payload": _tampered,
    "alg none": _alg_none,
    "alg none via pyjwt": lambda: jwt.encode(_claims(), None, algorithm="none"),
    "HS512 with the right secret": lambda: jwt.encode(_claims(), SECRET, algorithm="HS512"),
    "RS256": _rsa_token,
    "malformed": lambda: "not.a.token",
    "empty": lambda: "",
    "missing exp": lambda: jwt.encode(
        {k: v for k, v in _claims().items() if k != "exp"}, SECRET, algorithm="HS256"
    ),  # fmt: skip
    "missing sub": lambda: jwt.encode(
        {k: v for k, v in _claims().items() if k != "sub"}, SECRET, algorithm="HS256"
    ),  # fmt: skip
    "uid not an int": lambda: jwt.encode(_claims(uid="7"), SECRET, algorithm="HS256"),
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_tokens_are_not_authenticated(kind: str) -> None:
    with pytest.raises(NotAuthenticated):
        decode_token(BAD_TOKENS[kind](), AUTH)


def test_a_good_hand_made_token_passes() -> None:
    """The bad-token cases differ from a valid token only in what they test."""
    assert decode_token(jwt.encode(_claims(), SECRET, algorithm="HS256"), AUTH)["uid"] == 7


def test_check_secret() -> None:
    check_secret(AUTH)
    with pytest.raises(ValueError, match="example"):
        check_secret(AuthSettings(secret_key=SecretStr(EXAMPLE_SECRET)))
    with pytest.raises(ValueError, match="32 bytes"):
        check_secret(AuthSettings(secret_key=SecretStr("short")))
    check_secret(AuthSettings(secret_key=SecretStr("short"), dev_mode=True))
    check_secret(AuthSettings(dev_mode=True))
