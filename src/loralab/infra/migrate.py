"""Schema migrations: run the Alembic revisions shipped inside the package.

``upgrade_database(url)`` brings any SQLite or PostgreSQL database to the newest revision; it
is cheap when the database is already there, so every entrypoint may call it at start. Upgrades
that start at the same time (the API and a worker) wait for each other: PostgreSQL through an
advisory lock (``migrations/env.py``), SQLite through a lock file beside the database (SQLite
runs DDL outside the migration's transaction, so two processes would both create the tables).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from loralab.infra.db import make_engine, normalise_url
from loralab.training.files import file_lock

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that finds the packaged migrations (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    # ConfigParser interpolates %: a password like p%40ss must reach SQLAlchemy unchanged
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(str(parsed.database))
    return None


def _ensure_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder (for example a fresh results home)."""
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _sqlite_upgrade_lock(url: str) -> Iterator[None]:
    """Exclusive among processes upgrading the same SQLite file."""
    path = _sqlite_file(url)
    if path is None:
        yield
        return
    with file_lock(path.with_name(f"{path.name}.migrate-lock")):
        yield


def upgrade_database(url: str) -> None:
    """Run ``alembic upgrade head`` on ``url`` (SQLite or PostgreSQL)."""
    _ensure_sqlite_folder(url)
    with _sqlite_upgrade_lock(url):
        command.upgrade(alembic_config(url), "head")


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None for an empty (unmigrated) database
    or a SQLite file that does not exist yet (it is not created)."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
