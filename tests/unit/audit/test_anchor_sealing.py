"""When the head is sealed: after the commit, from the record appended (no database needed),
never for a rolled-back append, and a failing anchor file never fails the committed change."""

from __future__ import annotations

import threading
import time
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


def test_the_seal_is_written_after_the_connection_is_back_in_the_pool(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The anchor's fsync never holds a database connection (a pool shared by 40 request
    threads waited on them); the change's commit still returns after the seal."""
    anchor = AuditAnchor(tmp_path / "anchor.json", KEY)
    held: list[int] = []
    write = anchor._write

    def watched(head: Head) -> None:
        held.append(db.engine.pool.checkedout())  # type: ignore[attr-defined]
        write(head)

    monkeypatch.setattr(anchor, "_write", watched)
    log = AuditLog(db, anchor=anchor)
    append(db, log, 2)
    assert held == [0, 0]
    assert anchor.read() is not None and anchor.read().id == 2  # type: ignore[union-attr]


def test_seals_arriving_during_a_write_are_written_once_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: while one write is on the disk, ten more heads arrive; one more write
    seals the newest, and every caller returns with its head (or a newer one) in the file."""
    anchor = AuditAnchor(tmp_path / "anchor.json", KEY)
    writes: list[int] = []
    release = threading.Event()
    write = anchor._write

    def slow(head: Head) -> None:
        writes.append(head.id)
        if len(writes) == 1:
            release.wait(10)
        write(head)

    monkeypatch.setattr(anchor, "_write", slow)
    seen: dict[int, int] = {}

    def seal(i: int) -> None:
        anchor.seal(Head(i, f"{i:064x}"))
        found = anchor.read()
        seen[i] = found.id if found else 0

    first = threading.Thread(target=seal, args=(1,))
    first.start()
    while not writes:
        time.sleep(0.005)
    others = [threading.Thread(target=seal, args=(i,)) for i in range(2, 12)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while (anchor._newest is None or anchor._newest.id != 11) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert writes == [1, 11]
    assert all(seen[i] >= i for i in range(1, 12))
    assert anchor.read() == Head(11, f"{11:064x}")


def test_an_older_head_never_rewrites_the_file(tmp_path: Path) -> None:
    anchor = AuditAnchor(tmp_path / "anchor.json", KEY)
    anchor.seal(Head(5, "5" * 64))
    anchor.seal(Head(3, "3" * 64))  # a commit whose after-commit hook ran late
    assert anchor.read() == Head(5, "5" * 64)
    AuditAnchor(tmp_path / "anchor.json", KEY).seal(Head(4, "4" * 64))  # another process
    assert anchor.read() == Head(5, "5" * 64)


def test_a_savepoint_commit_seals_nothing_until_the_transaction_commits(
    pg_private_db_url: str, tmp_path: Path
) -> None:
    """A record appended in a savepoint belongs to the outer transaction: rolled back with it,
    it is never sealed (a seal of a record that does not exist reads as truncation)."""
    database = Database(pg_private_db_url)
    try:
        log = AuditLog(database, anchor=AuditAnchor(tmp_path / "anchor.json", KEY))
        append(database, log, 1)
        with pytest.raises(RuntimeError), database.session() as session:
            with session.begin_nested():
                log.record(session, action="inner", outcome="allowed")
            assert log.anchor is not None and log.anchor.read().id == 1  # type: ignore[union-attr]
            raise RuntimeError("the outer change fails")
        assert log.anchor is not None and log.anchor.read().id == 1  # type: ignore[union-attr]
        assert log.verify().ok
        with database.session() as session, session.begin_nested():
            log.record(session, action="inner", outcome="allowed")
        assert log.anchor.read().id == 2 and log.verify().ok  # type: ignore[union-attr]
    finally:
        database.dispose()
