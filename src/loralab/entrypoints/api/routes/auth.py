"""Sign-in and the signed-in user's own account."""

from __future__ import annotations

from fastapi import APIRouter, Request

from loralab.entrypoints.api.deps import Context, CurrentUser, services
from loralab.entrypoints.api.schemas import (
    LoginRequest,
    OwnPasswordChanged,
    PasswordChange,
    TokenResponse,
    UserPublic,
    errors,
)

router = APIRouter(tags=["auth"])


@router.post(
    "/login", summary="Sign in: a bearer token (JWT, HS256)", responses=errors(401, 422, 429)
)
def login(body: LoginRequest, request: Request, ctx: Context) -> TokenResponse:
    found = services(request)
    try:
        token, user = found.users.login(body.username, body.password, ctx)
    except Exception:
        found.metrics.logins.labels("denied").inc()
        raise
    found.metrics.logins.labels("allowed").inc()
    return TokenResponse(
        access_token=token,
        expires_in=found.settings.auth.token_minutes * 60,
        user=UserPublic.of(user),
    )


@router.get("/me", summary="The signed-in user", responses=errors(401))
def me(request: Request, actor: CurrentUser) -> UserPublic:
    return UserPublic.of(services(request).users.get_user(actor.username))


@router.post(
    "/me/password",
    summary="Change your password (older tokens stop working)",
    responses=errors(401, 403, 422, 429),
)
def change_my_password(
    body: PasswordChange, request: Request, actor: CurrentUser, ctx: Context
) -> OwnPasswordChanged:
    services(request).users.change_password(
        actor, actor.username, body.new_password, ctx, old_password=body.old_password
    )
    return OwnPasswordChanged(changed=True, detail="password changed: sign in again")
