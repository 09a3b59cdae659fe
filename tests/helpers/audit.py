"""Shared checks for the audit log tests (SQLite here, PostgreSQL in integration)."""

from __future__ import annotations

import threading

from sqlalchemy import text

from loralab.audit import AuditLog
from loralab.infra.db import Database


def append(db: Database, log: AuditLog, count: int, user: str = "alice") -> None:
    for i in range(count):
        with db.session() as session:
            log.record(
                session,
                action="test.event",
                outcome="allowed",
                username=user,
                target=f"thing-{i}",
                detail={"n": i, "nested": {"ok": [1, 2]}},
            )


def raw(db: Database, sql: str) -> None:
    """Run ``sql`` as an attacker with database rights would: on PostgreSQL as a superuser who
    switches triggers off (the append-only trigger would refuse it otherwise)."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(sql))


def append_concurrently(
    db: Database, log: AuditLog, threads: int, each: int
) -> list[BaseException]:
    """Several threads append at once; returns the errors they met."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        try:
            start.wait()
            append(db, log, each, user=f"user{n}")
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


def check_tamper_detection(url: str) -> None:
    """Edited, deleted and swapped records are each reported at the right id."""
    swap = (
        "UPDATE audit_log SET id = -1 WHERE id = 2;"
        "UPDATE audit_log SET id = 2 WHERE id = 4;"
        "UPDATE audit_log SET id = 4 WHERE id = -1"
    )
    for sqls, bad_id, word in (
        ("UPDATE audit_log SET target = 'forged' WHERE id = 3", 3, "altered"),
        (
            "UPDATE audit_log SET outcome = 'denied' WHERE id = 5",
            5,
            "altered",
        ),
        ("DELETE FROM audit_log WHERE id = 3", 4, "removed"),
        ("DELETE FROM audit_log WHERE id = 1", 2, "removed"),
        (swap, 2, "altered"),
    ):
        db = Database(url)
        raw(db, "DELETE FROM audit_log")
        log = AuditLog(db)
        append(db, log, 6)
        assert log.verify().ok
        for sql in sqls.split(";"):
            raw(db, sql)
        result = log.verify()
        assert not result.ok, sqls
        assert result.first_bad_id == bad_id, (sqls, result)
        assert word in (result.problem or ""), (sqls, result)
        # records before the bad one were read and found fine
        assert result.checked == (bad_id - 1 if word == "altered" else bad_id - 2)
        db.dispose()
