"""Registry changes made on behalf of a signed-in user, on the audit record."""

from __future__ import annotations

from loralab.audit.log import AuditLog
from loralab.errors import LoralabError, PermissionDenied
from loralab.identity import Actor, RequestContext
from loralab.infra.db import Database
from loralab.registry.service import RegistryService, TransitionResult


def transition_audited(
    registry: RegistryService,
    db: Database,
    audit: AuditLog,
    actor: Actor,
    ctx: RequestContext,
    *,
    ref: str,
    stage: str,
    reason: str = "",
    force: bool = False,
) -> TransitionResult:
    """``registry.transition`` by ``actor``, recorded allowed, denied or failed."""
    outcome, detail = "allowed", {"stage": stage, "force": force}
    try:
        return registry.transition(ref, stage, user=actor.username, reason=reason, force=force)
    except LoralabError as err:
        outcome = "denied" if isinstance(err, PermissionDenied) else "failed"
        detail["error"] = str(err)[:500]
        raise
    finally:
        with db.session() as session:
            audit.record_by(
                session, actor, ctx, action="model.transition", outcome=outcome, target=ref,
                detail=detail,
            )  # fmt: skip
