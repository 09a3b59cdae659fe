"""User management (admins)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from loralab.entrypoints.api.deps import Admin, Context, services

router = APIRouter(tags=["users"])


class NewUser(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"username": "bob", "password": "a long passphrase", "role": "user"}]
        },
    )
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: Literal["admin", "user"] = "user"


class UserChange(BaseModel):
    """One change per request: each is its own audited step, so a refused second change can
    never leave the first one applied."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"disabled": True}]})
    role: Literal["admin", "user"] | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _one_change(self) -> UserChange:
        if (self.role is None) == (self.disabled is None):
            raise ValueError("give exactly one of role, disabled")
        return self


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_password: str = Field(min_length=1, max_length=256)


@router.get("/users", summary="All users (admin)")
def list_users(request: Request, actor: Admin) -> list[dict[str, Any]]:
    return services(request).users.list_users(actor)


@router.post("/users", status_code=201, summary="Create a user (admin)")
def create_user(body: NewUser, request: Request, actor: Admin, ctx: Context) -> dict[str, Any]:
    return services(request).users.create_user(
        body.username, body.password, body.role, actor=actor, ctx=ctx
    )


@router.patch("/users/{username}", summary="Change a user's role or disable them (admin)")
def change_user(
    username: str, body: UserChange, request: Request, actor: Admin, ctx: Context
) -> dict[str, Any]:
    users = services(request).users
    if body.role is not None:
        return users.set_role(actor, username, body.role, ctx)
    return users.set_disabled(actor, username, bool(body.disabled), ctx)


@router.post("/users/{username}/password", summary="Reset a user's password (admin)")
def reset_password(
    username: str, body: PasswordReset, request: Request, actor: Admin, ctx: Context
) -> dict[str, Any]:
    services(request).users.change_password(actor, username, body.new_password, ctx)
    return {"changed": True}
