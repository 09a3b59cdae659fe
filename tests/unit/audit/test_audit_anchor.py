"""The sealed head: truncation and rewriting with recomputed hashes are detected (issue 11, 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.helpers.audit import append, raw

from loralab.audit import AuditLog
from loralab.audit.anchor import AuditAnchor
from loralab.audit.log import hashed_fields, record_hash
from loralab.audit.refused import record_refused
from loralab.identity import RequestContext
from loralab.infra.db import AuditRecord, Database
from loralab.settings import Settings

KEY = b"k" * 32


@pytest.fixture()
def db(sqlite_db_url: str) -> Database:
    database = Database(sqlite_db_url)
    yield database
    database.dispose()


def anchored(db: Database, tmp_path: Path) -> AuditLog:
    return AuditLog(db, anchor=AuditAnchor(tmp_path / "anchor.json", KEY))


@pytest.mark.parametrize("keep", [5, 3, 0])
def test_deleting_the_newest_records_is_detected(db: Database, tmp_path: Path, keep: int) -> None:
    log = anchored(db, tmp_path)
    append(db, log, 6)
    assert log.verify().ok
    raw(db, f"DELETE FROM audit_log WHERE id > {keep}")
    result = log.verify()
    assert not result.ok and "truncated" in (result.problem or "")
    assert result.first_bad_id == keep + 1


def test_truncation_is_still_detected_after_new_appends(db: Database, tmp_path: Path) -> None:
    log = anchored(db, tmp_path)
    append(db, log, 6)
    raw(db, "DELETE FROM audit_log WHERE id > 2")
    append(db, log, 2)  # ids 3, 4: the seal stays at 6 (it never moves back)
    assert not log.verify().ok


def rechain_from(db: Database, start: int) -> None:
    """Forge record ``start`` and recompute every hash after it, as an attacker would."""
    with db.session() as session:
        rows = session.scalars(select(AuditRecord).order_by(AuditRecord.id)).all()
        prev = rows[start - 2].hash if start > 1 else "0" * 64
        for row in rows[start - 1 :]:
            if row.id == start:
                row.target = "forged"
            row.prev_hash = prev
            row.hash = record_hash(prev, hashed_fields(row))
            prev = row.hash


def test_rewriting_with_recomputed_hashes_is_detected(db: Database, tmp_path: Path) -> None:
    log = anchored(db, tmp_path)
    append(db, log, 6)
    rechain_from(db, 3)
    assert AuditLog(db).verify().ok  # the chain alone is fooled
    result = log.verify()
    assert not result.ok and "rewritten" in (result.problem or "")


def test_a_forged_anchor_file_is_detected(db: Database, tmp_path: Path) -> None:
    log = anchored(db, tmp_path)
    append(db, log, 4)
    path = tmp_path / "anchor.json"
    data = json.loads(path.read_text())
    raw(db, "DELETE FROM audit_log WHERE id > 2")
    with db.session() as session:
        data.update(id=2, hash=session.scalar(select(AuditRecord.hash).where(AuditRecord.id == 2)))
    path.write_text(json.dumps(data))  # without the key the seal cannot be remade
    result = log.verify()
    assert not result.ok and "bad seal" in (result.problem or "")


def test_a_deleted_anchor_file_is_reported(db: Database, tmp_path: Path) -> None:
    log = anchored(db, tmp_path)
    append(db, log, 2)
    (tmp_path / "anchor.json").unlink()
    assert not log.verify().ok


def test_a_rolled_back_append_seals_nothing(db: Database, tmp_path: Path) -> None:
    log = anchored(db, tmp_path)
    append(db, log, 2)
    with pytest.raises(RuntimeError), db.session() as session:
        log.record(session, action="x", outcome="allowed")
        raise RuntimeError("the change it records failed")
    assert json.loads((tmp_path / "anchor.json").read_text())["id"] == 2
    assert log.verify().ok


def test_the_key_is_never_the_jwt_secret(tmp_path: Path) -> None:
    secret = "s" * 40
    settings = Settings(
        storage={"results_dir": tmp_path},
        auth={"secret_key": secret},
        audit={"anchor_key": secret},
    )
    with pytest.raises(ValueError, match="JWT"):
        AuditAnchor.from_settings(settings)


def test_without_a_configured_key_one_is_made_once_owner_only(tmp_path: Path) -> None:
    settings = Settings(storage={"results_dir": tmp_path})
    first = AuditAnchor.from_settings(settings)
    key_file = tmp_path / "audit-anchor.key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert AuditAnchor.from_settings(settings)._key == first._key
    assert first.path == tmp_path / "audit-anchor.json"


def test_refused_requests_are_recorded(db: Database, tmp_path: Path) -> None:
    log = anchored(db, tmp_path)
    ctx = RequestContext(client="10.0.0.9", request_id="r1")
    record_refused(
        log, db, ctx, actor=None, method="POST", route="/train", status=422, reason="bad body"
    )
    rows, _ = log.query()
    assert rows[0].action == "refused POST /train" and rows[0].outcome == "failed"
    assert rows[0].detail == {"status": 422, "reason": "bad body"}
    assert log.verify().ok
