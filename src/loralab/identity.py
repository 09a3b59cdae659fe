"""Who acts and where a request came from: the one identity type every layer uses.

It sits at the bottom of the layer order (above only the pure training library), so the audit
log, datasets, registry actions and jobs can type their ``actor`` and ``ctx`` parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_ROLE = "admin"
USER_ROLE = "user"
ROLES = (ADMIN_ROLE, USER_ROLE)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, or a local operator (id 0)."""

    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE


@dataclass(frozen=True)
class RequestContext:
    """Where a request came from, for the audit log."""

    client: str | None = None
    request_id: str | None = None


SYSTEM = Actor(id=0, username="system", role=ADMIN_ROLE)


def operator_actor(os_user: str) -> Actor:
    """The local operator of the CLI: an admin recorded as ``cli:<os user>``."""
    return Actor(id=0, username=f"cli:{os_user}"[:64], role=ADMIN_ROLE)
