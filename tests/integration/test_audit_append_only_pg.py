"""On PostgreSQL the audit table refuses UPDATE, DELETE and TRUNCATE (migration 0003)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.helpers.audit import append

from loralab.audit import AuditLog
from loralab.infra.db import Database

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET target = 'forged' WHERE id = 1",
        "DELETE FROM audit_log WHERE id = 2",
        "TRUNCATE audit_log",
    ],
)
def test_the_table_is_append_only(pg_private_db_url: str, sql: str) -> None:
    db = Database(pg_private_db_url)
    log = AuditLog(db)
    append(db, log, 2)
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text(sql))
    assert log.verify().ok and log.verify().checked == 2
    db.dispose()
