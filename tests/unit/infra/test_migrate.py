"""The packaged Alembic migrations build exactly the schema of loralab.infra.db."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from loralab.infra.db import Base, normalise_url
from loralab.infra.migrate import current_revision, head_revision, upgrade_database


def schema_diffs(url: str) -> list[object]:
    """Differences between the database at ``url`` and Base.metadata (empty: identical)."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_fresh_sqlite_upgrades_to_head_and_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'folder' / 'loralab.db'}"
    assert current_revision(url) is None
    upgrade_database(url)
    assert current_revision(url) == head_revision() == "0006"
    assert schema_diffs(url) == []


def test_upgrade_is_idempotent(sqlite_db_url: str) -> None:
    upgrade_database(sqlite_db_url)
    upgrade_database(sqlite_db_url)
    assert current_revision(sqlite_db_url) == head_revision()


def test_a_diff_is_reported_when_the_schema_drifts(sqlite_db_url: str) -> None:
    """The comparison itself can fail: drop an index and it notices."""
    engine = create_engine(sqlite_db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_audit_log_action")
    engine.dispose()
    assert schema_diffs(sqlite_db_url) != []


def test_percent_in_path_survives_alembic_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd%20name.db'}"
    upgrade_database(url)  # unescaped, alembic's config parser would refuse the %
    assert current_revision(url) == head_revision()
    assert len(list(tmp_path.glob("odd*.db"))) == 1


def test_processes_upgrading_a_fresh_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """The API and workers start together: none may fail on "table already exists"."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'loralab.db'}"
    code = f"from loralab.infra.migrate import upgrade_database; upgrade_database({url!r})"
    starts = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode()[-400:] for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0, 0], errors
    assert current_revision(url) == head_revision() and schema_diffs(url) == []
