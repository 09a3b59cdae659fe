"""Allowed stage transitions.

new -> Staging, Staging -> Production, Staging -> Archived, Production -> Archived,
Archived -> Staging. Promoting a version to Production archives the previous Production.
"""

from __future__ import annotations

from loralab.errors import Conflict
from loralab.registry.cards import Stage

ALLOWED: dict[Stage | None, frozenset[Stage]] = {
    None: frozenset({Stage.STAGING}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}

ALLOWED_TEXT = (
    "new -> Staging, Staging -> Production, Staging -> Archived, Production -> Archived, "
    "Archived -> Staging"
)


def check_transition(current: Stage | None, target: Stage) -> None:
    """Conflict unless ``current -> target`` is allowed."""
    if target not in ALLOWED[current]:
        name = current.value if current else "new"
        raise Conflict(
            f"transition {name} -> {target.value} is not allowed; allowed: {ALLOWED_TEXT}"
        )
