"""Two machines, one audit table: each seals the head in an anchor file of its own.

A machine that joins a running platform anchors at the table's head when its API starts, so
its verify (``loralab_audit_chain_valid``) does not report the chain unanchored until its first
append; from then on each anchor detects truncation below what it sealed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.audit import append, raw

from loralab.audit import AuditLog
from loralab.audit.anchor import AuditAnchor, Head
from loralab.infra.db import Database

KEY_A, KEY_B = b"a" * 32, b"b" * 32


@pytest.fixture()
def db(sqlite_db_url: str) -> Database:
    database = Database(sqlite_db_url)
    yield database
    database.dispose()


def machine(db: Database, folder: Path, key: bytes) -> AuditLog:
    return AuditLog(db, anchor=AuditAnchor(folder / "audit-anchor.json", key))


def test_a_new_machine_anchors_at_the_head_it_finds(db: Database, tmp_path: Path) -> None:
    first, second = machine(db, tmp_path / "a", KEY_A), machine(db, tmp_path / "b", KEY_B)
    append(db, first, 3)
    assert "not anchored" in (second.verify().problem or "")  # before: a false alarm
    head = second.anchor_current_head()
    assert head is not None and head.id == 3
    assert second.verify().ok and first.verify().ok
    append(db, first, 2)  # sealed on the first machine only
    raw(db, "DELETE FROM audit_log WHERE id > 2")
    assert not first.verify().ok
    assert "truncated" in (second.verify().problem or "")  # below its own seal (3)


def test_an_existing_anchor_is_never_moved(db: Database, tmp_path: Path) -> None:
    log = machine(db, tmp_path / "a", KEY_A)
    assert log.anchor_current_head() is None  # an empty table: nothing to seal
    append(db, log, 4)
    raw(db, "DELETE FROM audit_log WHERE id > 2")
    assert log.anchor_current_head() is None
    assert log.anchor is not None and log.anchor.read() == Head(4, log.anchor.read().hash)
    assert not log.verify().ok  # the truncation stays visible


def test_a_damaged_anchor_is_left_for_verify_to_report(db: Database, tmp_path: Path) -> None:
    log = machine(db, tmp_path / "a", KEY_A)
    append(db, log, 2)
    assert log.anchor is not None
    log.anchor.path.write_text('{"id": 2, "hash": "x", "mac": "forged"}', encoding="utf-8")
    assert log.anchor_current_head() is None
    assert "bad seal" in (log.verify().problem or "")


def test_the_api_anchors_at_start(tmp_path: Path) -> None:
    from loralab.entrypoints.api.app import create_app
    from loralab.settings import Settings

    url = f"sqlite:///{tmp_path / 'platform.db'}"
    settings = Settings.model_validate(
        {
            "storage": {"results_dir": tmp_path / "b" / "results"},
            "db": {"url": url},
            "auth": {"secret_key": "s" * 48},
        }
    )
    from loralab.infra.migrate import upgrade_database

    upgrade_database(url)
    db = Database(url)
    append(db, machine(db, tmp_path / "a", KEY_A), 2)  # another machine's appends
    app = create_app(settings)
    assert app.state.services.audit.verify().ok
    app.state.services.db.dispose()
    db.dispose()
