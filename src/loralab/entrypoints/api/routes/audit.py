"""The audit log (admins)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request

from loralab.entrypoints.api.deps import Admin, services
from loralab.entrypoints.api.schemas import MAX_OFFSET, AuditPage, AuditRecordPublic, errors

router = APIRouter(tags=["audit"])


@router.get(
    "/audit/logs", summary="Audit records, newest first (admin)", responses=errors(401, 403, 422)
)
def audit_logs(
    request: Request,
    actor: Admin,
    user: str | None = Query(default=None, description="Only this user's records."),
    action: str | None = Query(default=None, description="Only this action, e.g. login."),
    since: datetime | None = Query(default=None, description="ISO time, inclusive."),
    until: datetime | None = Query(default=None, description="ISO time, exclusive."),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    limit: int = Query(default=50, ge=1, le=500),
) -> AuditPage:
    records, total = services(request).audit.query(
        username=user, action=action, since=since, until=until, offset=offset, limit=limit
    )
    items = [AuditRecordPublic.of(r) for r in records]
    return AuditPage(items=items, total=total, offset=offset, limit=limit)
