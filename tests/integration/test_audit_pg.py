"""The hash-chained audit log on a real PostgreSQL server (advisory-lock serialisation)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from tests.helpers.audit import append, append_concurrently, check_tamper_detection

from loralab.audit import AuditLog
from loralab.infra.db import Database

pytestmark = [pytest.mark.integration]


def test_detects_edited_deleted_and_swapped_records(pg_private_db_url: str) -> None:
    check_tamper_detection(pg_private_db_url)


def test_concurrent_appends_keep_one_chain(pg_private_db_url: str) -> None:
    db = Database(pg_private_db_url)
    log = AuditLog(db)
    assert append_concurrently(db, log, threads=8, each=10) == []
    result = log.verify()
    assert result.ok and result.checked == 80
    db.dispose()


def test_timestamps_and_details_round_trip(pg_private_db_url: str) -> None:
    db = Database(pg_private_db_url)
    log = AuditLog(db)
    append(db, log, 2)
    rows, total = log.query(since=datetime.now(timezone.utc) - timedelta(minutes=5))
    assert total == 2 and rows[0].detail["nested"] == {"ok": [1, 2]}
    assert log.verify().ok
    db.dispose()
