"""The hash-chained audit log on SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from tests.helpers.audit import append, append_concurrently, check_tamper_detection, raw

from loralab.audit import AuditLog
from loralab.audit.log import GENESIS_HASH, hashed_fields, record_hash
from loralab.infra.db import Database


@pytest.fixture()
def db(sqlite_db_url: str) -> Database:
    database = Database(sqlite_db_url)
    yield database
    database.dispose()


def test_records_chain_from_genesis(db: Database) -> None:
    log = AuditLog(db)
    append(db, log, 3)
    rows, total = log.query(limit=10)
    assert total == 3
    oldest, *_, newest = sorted(rows, key=lambda r: r.id)
    assert [r.id for r in rows] == [3, 2, 1]  # newest first
    assert oldest.prev_hash == GENESIS_HASH
    assert rows[0].prev_hash == rows[1].hash
    assert newest.detail == {"n": 2, "nested": {"ok": [1, 2]}}
    assert log.verify().ok and log.verify().checked == 3


def test_hash_covers_the_fields(db: Database) -> None:
    log = AuditLog(db)
    with db.session() as session:
        row = log.record(session, action="a", outcome="denied", username="bob", client="1.2.3.4")
    assert row.hash == record_hash(GENESIS_HASH, hashed_fields(row))
    assert hashed_fields(row)["at"].endswith("+00:00")


def test_rolled_back_transaction_leaves_no_record(db: Database) -> None:
    log = AuditLog(db)
    append(db, log, 1)
    with pytest.raises(RuntimeError), db.session() as session:
        log.record(session, action="doomed", outcome="allowed")
        raise RuntimeError("the change failed")
    append(db, log, 1)
    assert log.query()[1] == 2
    assert log.verify().ok


@pytest.mark.parametrize(
    "detail",
    [
        {"password": "x"},
        {"new_Password": "x"},
        {"Authorization": "Bearer x"},
        {"access_token": "x"},
        {"outer": {"client_secret": "x"}},
        {"items": [{"api_key": "x"}]},
    ],
)
def test_secret_looking_detail_keys_are_refused(db: Database, detail: dict[str, object]) -> None:
    log = AuditLog(db)
    with pytest.raises(ValueError, match="secrets"), db.session() as session:
        log.record(session, action="x", outcome="allowed", detail=detail)
    assert log.query()[1] == 0


def test_bad_outcome_and_non_json_detail_are_refused(db: Database) -> None:
    log = AuditLog(db)
    with db.session() as session:
        with pytest.raises(ValueError, match="outcome"):
            log.record(session, action="x", outcome="maybe")
        with pytest.raises(ValueError, match="JSON"):
            log.record(session, action="x", outcome="allowed", detail={"when": datetime.now()})


def test_detects_edited_deleted_and_swapped_records(sqlite_db_url: str) -> None:
    check_tamper_detection(sqlite_db_url)


def test_relinked_forgery_is_caught_at_the_next_record(db: Database) -> None:
    """An editor who recomputes the edited record's hash still breaks the next link."""
    log = AuditLog(db)
    append(db, log, 4)
    with db.session() as session:
        from loralab.infra.db import AuditRecord

        row = session.get(AuditRecord, 2)
        assert row is not None
        row.target = "forged"
        row.hash = record_hash(row.prev_hash, hashed_fields(row))
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "broken link" in (result.problem or "")


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    log = AuditLog(db)
    assert append_concurrently(db, log, threads=6, each=8) == []
    result = log.verify()
    assert result.ok and result.checked == 48


def test_query_filters_pages_and_caps(db: Database) -> None:
    now = datetime.now(timezone.utc)
    clock = iter([now - timedelta(hours=2), now - timedelta(hours=1), now]).__next__
    log = AuditLog(db, clock=clock)
    with db.session() as session:
        log.record(session, action="login", outcome="denied", username="ann")
        log.record(session, action="login", outcome="allowed", username="ann")
        log.record(session, action="user.create", outcome="allowed", username="bob")
    assert log.query(username="ann")[1] == 2
    assert log.query(action="login", username="bob")[1] == 0
    rows, total = log.query(since=now - timedelta(minutes=90))
    assert total == 2 and {r.action for r in rows} == {"login", "user.create"}
    rows, total = log.query(until=now - timedelta(minutes=90))
    assert total == 1 and rows[0].outcome == "denied"
    rows, total = log.query(offset=1, limit=1)
    assert total == 3 and [r.id for r in rows] == [2]
    raw(db, "DELETE FROM audit_log")
    AuditLog(db).record  # noqa: B018 - unchanged object, still usable
    append(db, AuditLog(db), 520)
    rows, total = AuditLog(db).query(limit=10_000)
    assert total == 520 and len(rows) == 500
