"""Dependencies named as users of the platform know them.

``get_current_user``: a valid token (401 otherwise). ``check_admin``: admin-only routes (403,
and the denial is audited). ``check_task_owner``: the job, if the caller owns it or is an admin;
anyone else gets the same 404 as for a job that does not exist (the check lives in the job
service, so the CLI and worker obey it too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from loralab.audit.refused import record_refused
from loralab.bootstrap import Services
from loralab.errors import NotAuthenticated, PermissionDenied
from loralab.identity import Actor, RequestContext
from loralab.infra.ratelimit import limits_of
from loralab.jobs.views import JobView

bearer = HTTPBearer(auto_error=False, description="A token from POST /login")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def request_context(request: Request) -> RequestContext:
    """Who asks (the address from :func:`middleware.client_address`) and the request id."""
    client = getattr(request.state, "client", None)
    return RequestContext(client=client, request_id=getattr(request.state, "request_id", None))


def get_current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    """The signed-in user behind the bearer token; a refusal is on the audit record (the
    reason, never the token)."""
    try:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise NotAuthenticated(
                "sign in first: POST /login, then send 'Authorization: Bearer <token>'"
            )
        actor = services(request).users.authenticate(credentials.credentials)
    except NotAuthenticated as err:
        _record_refusal(request, None, 401, str(err))
        raise
    request.state.actor = actor
    return actor


def _record_refusal(request: Request, actor: Actor | None, status: int, reason: str) -> None:
    found = services(request)
    route = getattr(request.scope.get("route"), "path", None) or "unmatched"
    record_refused(
        found.audit, found.db, request_context(request), actor=actor, method=request.method,
        route=route, status=status, reason=reason,
    )  # fmt: skip


async def _context(request: Request) -> RequestContext:
    """``request_context`` as a dependency: async, so FastAPI calls it on the event loop
    instead of handing it to a worker thread (a thread hop per request, for two reads)."""
    return request_context(request)


CurrentUser = Annotated[Actor, Depends(get_current_user)]
Context = Annotated[RequestContext, Depends(_context)]


def check_admin(request: Request, actor: CurrentUser, ctx: Context) -> Actor:
    """Admins only; a refusal is on the audit record."""
    if not actor.is_admin:
        found = services(request)
        route = getattr(request.scope.get("route"), "path", request.url.path)
        with found.db.session() as session:
            found.audit.record_by(
                session, actor, ctx, action=f"access {request.method} {route}",
                outcome="denied", target=route,
            )  # fmt: skip
        raise PermissionDenied("this needs the admin role")
    return actor


Admin = Annotated[Actor, Depends(check_admin)]


def check_task_owner(task_id: str, request: Request, actor: CurrentUser) -> JobView:
    """The job ``task_id`` as its owner (or an admin) sees it; NotFound for anyone else."""
    return services(request).jobs.get(actor, task_id)


OwnedTask = Annotated[JobView, Depends(check_task_owner)]


def limited(kind: str) -> Callable[[Request, Actor], None]:
    """A dependency counting the signed-in user's requests against ``limits.<kind>``
    (train, upload, predict): 429 with Retry-After past the limit."""

    def count(request: Request, actor: CurrentUser) -> None:
        found = services(request)
        limit = getattr(limits_of(found.settings.limits), kind)
        found.limiter.enforce(limit, f"{actor.id}:{actor.username}")

    return count
