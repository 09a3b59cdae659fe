"""Jobs remember when their id was last handed to the broker (``published_at``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

The recovery sweep sends a queued job again only when it never reached the broker (NULL) or the
broker forgot it, never while its message is still waiting there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("published_at")
