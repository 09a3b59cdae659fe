"""Jobs name the sweep trial they train (``sweep_id``, ``sweep_trial``), NULL for other jobs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

The worker that trains a trial's job reports each evaluation to the trial (the sweep's pruner
may stop it there), and a finished trial lets the sweep ask for the next one. The link is set
by the server when the sweep queues the job; a ``POST /train`` body cannot set it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sweep_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("sweep_trial", sa.Integer(), nullable=True))
        batch.create_index("ix_jobs_sweep_id", ["sweep_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_sweep_id")
        batch.drop_column("sweep_trial")
        batch.drop_column("sweep_id")
