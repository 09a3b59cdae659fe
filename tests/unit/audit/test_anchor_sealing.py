"""When the head is sealed: after the commit, from the record appended (no database needed),
never for a rolled-back append, and a failing anchor file never fails the committed change."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.audit import append

from loralab.audit import AuditLog
from loralab.audit.anchor import AuditAnchor, Head
from loralab.infra.db import Database

KEY = b"k" * 32


@pytest.fixture()
def db(sqlite_db_url: str) -> Database:
    database = Database(sqlite_db_url)
    yield database
    database.dispose()


def test_the_last_append_of_a_transaction_is_sealed_at_commit(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, anchor=AuditAnchor(tmp_path / "anchor.json", KEY))
    with db.session() as session:
        log.record(session, action="a", outcome="allowed")
        second = log.record(session, action="b", outcome="allowed")
        assert log.anchor is not None and log.anchor.read() is None  # not before the commit
    assert log.anchor.read() == Head(2, second.hash)
    assert log.verify().ok


def test_a_rolled_back_append_seals_nothing(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, anchor=AuditAnchor(tmp_path / "anchor.json", KEY))
    append(db, log, 1)
    with pytest.raises(RuntimeError), db.session() as session:
        log.record(session, action="gone", outcome="allowed")
        raise RuntimeError("the change fails")
    assert log.anchor is not None and log.anchor.read() is not None
    assert log.anchor.read().id == 1  # type: ignore[union-attr]
    append(db, log, 1)  # the next append seals its own record
    assert log.anchor.read().id == 2 and log.verify().ok  # type: ignore[union-attr]


def test_an_anchor_that_cannot_be_written_does_not_fail_the_change(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the anchor's folder should be", encoding="utf-8")
    log = AuditLog(db, anchor=AuditAnchor(blocked / "anchor.json", KEY))
    append(db, log, 1)  # committed: no exception
    assert AuditLog(db).verify().checked == 1
    assert "audit anchor not sealed at record 1" in caplog.text
