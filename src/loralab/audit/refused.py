"""Refused requests on the audit record (401, 403, 422 on protected routes).

The API's error handlers call :func:`record_refused` for a request they refuse, so a stream
of refused attempts (bad tokens, forbidden routes, malformed bodies) leaves a trace next to the
allowed actions. Auditing must never turn a refusal into a server error: a failure to write is
logged and swallowed.
"""

from __future__ import annotations

import logging

from loralab.audit.log import AuditLog
from loralab.identity import Actor, RequestContext
from loralab.infra.db import Database

log = logging.getLogger("loralab.audit")


def record_refused(
    audit: AuditLog,
    db: Database,
    ctx: RequestContext,
    *,
    actor: Actor | None,
    method: str,
    route: str,
    status: int,
    reason: str,
) -> None:
    """Append a ``refused METHOD ROUTE`` record (outcome ``denied`` for 401/403, ``failed``
    for a malformed request), with the status and the first 200 characters of the reason."""
    outcome = "denied" if status in (401, 403) else "failed"
    try:
        with db.session() as session:
            audit.record(
                session,
                action=f"refused {method} {route}"[:64],
                outcome=outcome,
                username=actor.username if actor else None,
                role=actor.role if actor else None,
                target=route,
                client=ctx.client,
                request_id=ctx.request_id,
                detail={"status": status, "reason": reason[:200]},
            )
    except Exception:  # noqa: BLE001 - the refusal is answered whatever happens here
        log.exception("could not audit a refused %s %s", method, route)
