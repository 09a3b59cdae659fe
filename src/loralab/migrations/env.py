"""Alembic environment of loralab: runs the migrations in ``versions/`` against the URL that
``loralab.infra.migrate.upgrade_database`` put in the config (or a connection it passed)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from loralab.infra.db import Base, make_engine

# one constant per purpose; this one serialises concurrent upgrades on PostgreSQL
MIGRATION_LOCK_KEY = 7_301_001


def _run(connection: Connection) -> None:
    """Run the migrations in one transaction; PostgreSQL upgrades wait for each other."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # a second process starting at the same time waits here, then finds the schema
            # at head (the version is read after the lock, in READ COMMITTED)
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection when given one, else open the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: no sqlalchemy.url configured")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("loralab migrations run online only (upgrade_database)")
run_migrations_online()
