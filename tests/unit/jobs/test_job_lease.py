"""Leases: one delivery of a job wins it, a stale lease is taken over, a lost lease writes
nothing, and the recovery sweep requeues dead and forgotten jobs (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from tests.helpers.jobs_fakes import Ctx, FakeQueue, Who, register_dataset

from loralab.infra.db import Database, Job, utcnow
from loralab.jobs.execution import claim_job, write_job
from loralab.jobs.recover import requeue_stale
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import Settings


@pytest.fixture()
def job_id(
    jobs: JobService, people: dict[str, Who], settings: Settings, tiny_bert: Path, tmp_path: Path
) -> str:
    ref = register_dataset(settings, tiny_bert, tmp_path)
    request = TrainRequest(train_file=ref, base_model="tiny-bert")
    return str(jobs.submit(people["alice"], request, Ctx()).task_id)


def age(db: Database, job_id: str, seconds: float, **values: object) -> None:
    """Move the job's heartbeat and updated_at ``seconds`` into the past."""
    past = utcnow() - timedelta(seconds=seconds)
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.heartbeat_at = past
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
        row.updated_at = past  # after the flush: onupdate would overwrite it


def test_the_first_delivery_wins_the_lease_a_second_gets_nothing(
    db: Database, settings: Settings, job_id: str
) -> None:
    first = claim_job(db, settings.queue, job_id, "w1:1")
    assert first is not None and first.attempts == 1 and first.owner == "alice"
    assert claim_job(db, settings.queue, job_id, "w2:2") is None  # a fresh lease elsewhere
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert (row.state, row.worker, row.attempts) == ("validating", "w1:1", 1)
        assert row.started_at is not None
    again = claim_job(db, settings.queue, job_id, "w1:1")  # redelivered to the same worker
    assert again is not None and again.attempts == 2


def test_concurrent_deliveries_exactly_one_claims(
    db: Database, settings: Settings, job_id: str
) -> None:
    n = 8
    start = threading.Barrier(n)

    def claim(i: int) -> bool:
        start.wait()
        return claim_job(db, settings.queue, job_id, f"w{i}:{i}") is not None

    with ThreadPoolExecutor(n) as pool:
        won = list(pool.map(claim, range(n)))
    assert won.count(True) == 1
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.attempts == 1


def test_a_stale_lease_is_taken_over_and_the_old_holder_can_write_nothing(
    db: Database, settings: Settings, job_id: str
) -> None:
    old = claim_job(db, settings.queue, job_id, "w1:1")
    assert old is not None
    first_start = _row(db, job_id).started_at
    age(db, job_id, settings.queue.stale_after_seconds + 5, state="training")
    new = claim_job(db, settings.queue, job_id, "w2:2")
    assert new is not None and new.attempts == 2
    assert not write_job(db, old, state="succeeded", error="from a lost lease")
    row = _row(db, job_id)
    assert (row.state, row.worker, row.error) == ("validating", "w2:2", None)
    assert row.started_at == first_start  # the job started with its first delivery
    assert write_job(db, new, state="succeeded", finished_at=utcnow())
    assert claim_job(db, settings.queue, job_id, "w3:3") is None  # finished: nobody claims it
    assert not write_job(db, new, state="failed")  # and it stays as it ended


def test_recovery_requeues_dead_running_and_forgotten_queued_jobs_only(
    db: Database,
    settings: Settings,
    jobs: JobService,
    people: dict[str, Who],
    job_id: str,
    queue: FakeQueue,
) -> None:
    request = TrainRequest(train_file="reviews@latest", base_model="tiny-bert")
    alive = str(jobs.submit(people["bob"], request, Ctx()).task_id)
    forgotten = str(jobs.submit(people["bob"], request, Ctx()).task_id)
    fresh = str(jobs.submit(people["root"], request, Ctx()).task_id)
    stale = settings.queue.stale_after_seconds + 5
    for running in (job_id, alive):
        assert claim_job(db, settings.queue, running, f"w-{running}") is not None
    age(db, job_id, stale, state="training")  # its worker died
    age(db, forgotten, stale, heartbeat_at=None)  # the broker lost it
    queue.sent.clear()
    assert sorted(requeue_stale(db, settings, queue)) == sorted([job_id, forgotten])
    assert sorted(queue.sent) == sorted([(job_id, "cpu"), (forgotten, "cpu")])
    dead = _row(db, job_id)
    assert (dead.state, dead.worker, dead.heartbeat_at) == ("queued", None, None)
    assert _row(db, alive).state == "validating" and _row(db, fresh).state == "queued"
    assert requeue_stale(db, settings, queue) == []  # sent once per stale period


def _row(db: Database, job_id: str) -> Job:
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row
