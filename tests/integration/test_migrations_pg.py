"""The packaged migrations on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.unit.infra.test_migrate import schema_diffs

from loralab.infra.migrate import current_revision, head_revision

pytestmark = [pytest.mark.integration]


def test_migrated_postgres_matches_models(pg_db_url: str) -> None:
    assert current_revision(pg_db_url) == head_revision()
    assert schema_diffs(pg_db_url) == []


def test_concurrent_upgrades_of_an_empty_database_both_succeed(pg_empty_db_url: str) -> None:
    """API and worker may start together: separate processes upgrade one empty database."""
    code = (
        "import sys; from loralab.infra.migrate import upgrade_database; "
        "upgrade_database(sys.argv[1])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_empty_db_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results = [
        (proc.wait(timeout=120), proc.stderr.read() if proc.stderr else b"") for proc in procs
    ]
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert current_revision(pg_empty_db_url) == head_revision()
    assert schema_diffs(pg_empty_db_url) == []
