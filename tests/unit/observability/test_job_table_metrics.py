"""Job metrics counted from the jobs table (SQLite here; PostgreSQL in the integration test)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from loralab.infra.db import AuditRecord, Database, Job, User
from loralab.observability.jobs_table import (
    AuditChainCollector,
    AuditEventsCollector,
    JobTableCollector,
    register_platform_collectors,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Database:
    """A fresh migrated database of each kind (durations are computed in SQL, per dialect)."""
    name = "sqlite_db_url" if request.param == "sqlite" else "pg_private_db_url"
    database = Database(request.getfixturevalue(name))
    with database.session() as session:
        session.add(User(id=1, username="alice", password_hash="x", role="user"))
    return database


def add_job(
    db: Database, queue: str, state: str, seconds: float | None = None, **extra: Any
) -> None:
    started = T0 if seconds is not None or state in ("training",) else None
    finished = T0 + timedelta(seconds=seconds) if seconds is not None else None
    with db.session() as session:
        session.add(
            Job(
                id=str(uuid.uuid4()),
                owner_id=1,
                state=state,
                config={"batch_size": 8},
                queue=queue,
                started_at=started,
                finished_at=finished,
                **extra,
            )
        )


def scrape(db: Database, now: datetime = T0) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(JobTableCollector(db, clock=lambda: now))
    return registry


def test_outcomes_are_counted_per_queue_and_reason(db: Database) -> None:
    add_job(db, "cpu", "succeeded", 90)
    add_job(db, "cpu", "succeeded", 4000)
    add_job(db, "cuda", "failed", 30, failure_reason="oom")
    add_job(db, "cpu", "failed", 10, failure_reason="data")
    add_job(db, "cpu", "failed", 10)  # an old row: no reason recorded
    add_job(db, "cpu", "cancelled", 5)
    add_job(db, "cpu", "failed", 10, failure_reason="/srv/x")  # never a label
    r = scrape(db)
    assert r.get_sample_value("task_success_total", {"queue": "cpu"}) == 2
    assert r.get_sample_value("task_success_total", {"queue": "mps"}) == 0
    get = r.get_sample_value
    assert get("task_failure_total", {"queue": "cuda", "reason": "oom"}) == 1
    assert get("task_failure_total", {"queue": "cpu", "reason": "data"}) == 1
    assert get("task_failure_total", {"queue": "cpu", "reason": "error"}) == 2
    assert get("task_failure_total", {"queue": "cpu", "reason": "cancelled"}) == 1


def test_queue_length_has_a_series_per_queue(db: Database) -> None:
    add_job(db, "cpu", "queued")
    add_job(db, "cpu", "queued")
    add_job(db, "cuda", "queued")
    add_job(db, "cpu", "training")
    r = scrape(db)
    assert [
        r.get_sample_value("task_queue_length", {"queue": q}) for q in ("cpu", "cuda", "mps")
    ] == [
        2,
        1,
        0,
    ]
    assert r.get_sample_value("loralab_jobs_running", {"queue": "cpu"}) == 1


def test_duration_histogram_buckets_minutes_to_hours(db: Database) -> None:
    add_job(db, "cpu", "succeeded", 90)
    add_job(db, "cpu", "failed", 4000, failure_reason="nan")
    add_job(db, "cpu", "queued")  # not finished: not in the histogram
    r = scrape(db)
    labels = {"queue": "cpu"}
    assert r.get_sample_value("task_duration_seconds_count", labels) == 2
    assert r.get_sample_value("task_duration_seconds_sum", labels) == pytest.approx(4090, abs=0.5)
    assert r.get_sample_value("task_duration_seconds_bucket", {**labels, "le": "60.0"}) == 0
    assert r.get_sample_value("task_duration_seconds_bucket", {**labels, "le": "120.0"}) == 1
    assert r.get_sample_value("task_duration_seconds_bucket", {**labels, "le": "3600.0"}) == 1
    assert r.get_sample_value("task_duration_seconds_bucket", {**labels, "le": "7200.0"}) == 2
    assert r.get_sample_value("task_duration_seconds_bucket", {**labels, "le": "+Inf"}) == 2
    assert r.get_sample_value("task_duration_seconds_count", {"queue": "mps"}) == 0


def test_heartbeat_age_is_the_oldest_running_jobs(db: Database) -> None:
    add_job(db, "cpu", "training", heartbeat_at=T0 - timedelta(seconds=50))
    add_job(db, "cpu", "training", heartbeat_at=T0 - timedelta(seconds=5))
    r = scrape(db)
    assert r.get_sample_value("loralab_job_heartbeat_age_seconds", {"queue": "cpu"}) == 50
    assert r.get_sample_value("loralab_job_heartbeat_age_seconds", {"queue": "cuda"}) == 0


def test_audit_events_are_counted_per_action_and_outcome(db: Database) -> None:
    with db.session() as session:
        for i, (action, outcome) in enumerate(
            [
                ("login", "denied"),
                ("login", "denied"),
                ("login", "allowed"),
                ("model.transition", "allowed"),
            ],
            start=1,
        ):
            session.add(
                AuditRecord(id=i, action=action, outcome=outcome, prev_hash="p", hash=f"h{i}")
            )
    registry = CollectorRegistry()
    registry.register(AuditEventsCollector(db))
    get = registry.get_sample_value
    assert get("loralab_audit_events_total", {"action": "login", "outcome": "denied"}) == 2
    assert (
        get("loralab_audit_events_total", {"action": "model.transition", "outcome": "allowed"}) == 1
    )
    with db.session() as session:  # later entries are added to the totals on the next scrape
        session.add(AuditRecord(id=5, action="login", outcome="denied", prev_hash="p", hash="h5"))
        session.add(AuditRecord(id=6, action="upload", outcome="failed", prev_hash="p", hash="h6"))
    assert get("loralab_audit_events_total", {"action": "login", "outcome": "denied"}) == 3
    assert get("loralab_audit_events_total", {"action": "login", "outcome": "allowed"}) == 1
    assert get("loralab_audit_events_total", {"action": "upload", "outcome": "failed"}) == 1


def test_audit_chain_is_verified_at_most_once_per_interval() -> None:
    calls: list[bool] = []
    answers = iter([True, False])
    now = [1000.0]

    def verify() -> bool:
        calls.append(True)
        return next(answers)

    registry = CollectorRegistry()
    registry.register(AuditChainCollector(verify, interval=60, clock=lambda: now[0]))
    assert calls == []  # registering does not walk the log
    assert registry.get_sample_value("loralab_audit_chain_valid") == 1
    now[0] += 30
    assert registry.get_sample_value("loralab_audit_chain_valid") == 1
    now[0] += 31
    assert registry.get_sample_value("loralab_audit_chain_valid") == 0
    assert registry.get_sample_value("loralab_audit_verified_timestamp_seconds") == 1061
    assert len(calls) == 2


def test_a_failing_verification_reads_as_invalid() -> None:
    def verify() -> bool:
        raise OSError("database gone")

    registry = CollectorRegistry()
    registry.register(AuditChainCollector(verify, interval=60))
    assert registry.get_sample_value("loralab_audit_chain_valid") == 0


def test_registering_queries_nothing(sqlite_db_url: str) -> None:
    gone = Database(sqlite_db_url.replace("loralab.db", "missing/none.db"))
    registry = CollectorRegistry()
    register_platform_collectors(registry, gone, lambda: True, 60)  # no table, no error


def test_platform_collectors_register_once(db: Database) -> None:
    registry = CollectorRegistry()
    register_platform_collectors(registry, db, lambda: True, 60)
    register_platform_collectors(registry, db, lambda: True, 60)  # no duplicate error
    assert registry.get_sample_value("task_success_total", {"queue": "cpu"}) == 0
