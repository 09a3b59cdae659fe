"""Sign-in and the signed-in user's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from loralab.entrypoints.api.deps import Context, CurrentUser, services

router = APIRouter(tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"username": "alice", "password": "a long passphrase"}]},
    )
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


@router.post("/login", summary="Sign in: a bearer token (JWT, HS256)")
def login(body: LoginRequest, request: Request, ctx: Context) -> dict[str, Any]:
    found = services(request)
    try:
        token, user = found.users.login(body.username, body.password, ctx)
    except Exception:
        found.metrics.logins.labels("denied").inc()
        raise
    found.metrics.logins.labels("allowed").inc()
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": found.settings.auth.token_minutes * 60,
        "user": user,
    }


@router.get("/me", summary="The signed-in user")
def me(request: Request, actor: CurrentUser) -> dict[str, Any]:
    return services(request).users.get_user(actor.username)


@router.post("/me/password", summary="Change your password (older tokens stop working)")
def change_my_password(
    body: PasswordChange, request: Request, actor: CurrentUser, ctx: Context
) -> dict[str, Any]:
    services(request).users.change_password(
        actor, actor.username, body.new_password, ctx, old_password=body.old_password
    )
    return {"changed": True, "detail": "password changed: sign in again"}
