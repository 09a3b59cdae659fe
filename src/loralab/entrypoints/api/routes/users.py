"""User management (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from loralab.entrypoints.api.deps import Admin, Context, services
from loralab.entrypoints.api.schemas import (
    NewUser,
    PasswordChanged,
    PasswordReset,
    UserChange,
    UserList,
    UserPublic,
    errors,
)

router = APIRouter(tags=["users"])


@router.get("/users", summary="All users (admin)", responses=errors(401, 403))
def list_users(request: Request, actor: Admin) -> UserList:
    return UserList.model_validate(services(request).users.list_users(actor), from_attributes=True)


@router.post(
    "/users",
    status_code=201,
    summary="Create a user (admin)",
    responses=errors(401, 403, 409, 422),
)
def create_user(body: NewUser, request: Request, actor: Admin, ctx: Context) -> UserPublic:
    created = services(request).users.create_user(
        body.username, body.password, body.role, actor=actor, ctx=ctx
    )
    return UserPublic.of(created)


@router.patch(
    "/users/{username}",
    summary="Change a user's role or disable them (admin)",
    responses=errors(401, 403, 404, 409, 422),
)
def change_user(
    username: str, body: UserChange, request: Request, actor: Admin, ctx: Context
) -> UserPublic:
    users = services(request).users
    if body.role is not None:
        return UserPublic.of(users.set_role(actor, username, body.role, ctx))
    return UserPublic.of(users.set_disabled(actor, username, bool(body.disabled), ctx))


@router.post(
    "/users/{username}/password",
    summary="Reset a user's password (admin)",
    responses=errors(401, 403, 404, 422),
)
def reset_password(
    username: str, body: PasswordReset, request: Request, actor: Admin, ctx: Context
) -> PasswordChanged:
    services(request).users.change_password(actor, username, body.new_password, ctx)
    return PasswordChanged(changed=True)
