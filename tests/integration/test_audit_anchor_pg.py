"""Sealing the audit head on PostgreSQL takes no second pooled connection.

The seal used to read the head back in a new session from the caller's ``after_commit``, while
the caller's connection was still checked out: with every pooled connection held that way (a
loaded API process: more request threads than connections), each waited for a second one and
requests failed after the pool timeout, their changes committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from tests.helpers.audit import append

from loralab.audit import AuditLog
from loralab.audit.anchor import AuditAnchor
from loralab.infra.db import Database

pytestmark = [pytest.mark.integration]


def test_an_append_seals_within_a_pool_of_one_connection(
    pg_private_db_url: str, tmp_path: Path
) -> None:
    db = Database(pg_private_db_url)
    db.engine.dispose()
    db.engine = create_engine(db.url, pool_size=1, max_overflow=0, pool_timeout=2)
    db.sessions = sessionmaker(db.engine, expire_on_commit=False)
    log = AuditLog(db, anchor=AuditAnchor(tmp_path / "anchor.json", b"k" * 32))
    try:
        append(db, log, 2)
        assert log.anchor is not None and log.anchor.read() is not None
        assert log.anchor.read().id == 2  # type: ignore[union-attr]
        assert log.verify().ok
    finally:
        db.dispose()
