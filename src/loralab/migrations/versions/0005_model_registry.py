"""Model cards, stages and stage history in the database (``registry.backend`` database).

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10

``registered_models`` holds one row per model name: the row a stage change locks, and a change
counter (the registry's stamp). ``model_cards`` holds each version's stage and card; the partial
unique index lets at most one version per model be in Production, on PostgreSQL and SQLite.
``model_stage_history`` is the append-only stage history.

The existing JSON cards are not moved here: a migration cannot see the settings that name the
card folder. ``loralab.registry.db_import.import_card_files`` moves them in, run after the
upgrade when the database backend is in effect (``loralab.bootstrap.prepare_database``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
IN_PRODUCTION = sa.text("stage = 'Production'")


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "model_cards",
        sa.Column(
            "name",
            sa.String(100),
            sa.ForeignKey("registered_models.name"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("card", sa.JSON(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index(
        "uq_model_cards_one_production",
        "model_cards",
        ["name"],
        unique=True,
        postgresql_where=IN_PRODUCTION,
        sqlite_where=IN_PRODUCTION,
    )
    op.create_table(
        "model_stage_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_model_stage_history_model", "model_stage_history", ["model"])


def downgrade() -> None:
    op.drop_index("ix_model_stage_history_model", table_name="model_stage_history")
    op.drop_table("model_stage_history")
    op.drop_index("uq_model_cards_one_production", table_name="model_cards")
    op.drop_table("model_cards")
    op.drop_table("registered_models")
