"""Dispatch: a job accepted while the broker is down is sent by the recovery sweep later, and a
job whose message still waits in the broker is never sent again (issue 11, class 10)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from tests.helpers.jobs_fakes import Ctx, FakeQueue, Who, register_dataset

from loralab.infra.celery_app import create_celery_app
from loralab.infra.db import Database, Job, utcnow
from loralab.infra.queue import SENT_MARKER, CeleryJobQueue, TrackedQueue
from loralab.jobs.recover import requeue_stale
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import QueueSettings, Settings


class TrackingQueue(FakeQueue):
    """A queue that knows which sent jobs the broker still holds (like the Celery one)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: set[str] = set()

    def enqueue(self, job_id: str, queue: str) -> None:
        super().enqueue(job_id, queue)
        self.held.add(job_id)

    def forgotten(self, job_ids: Sequence[str]) -> set[str]:
        return {job_id for job_id in job_ids if job_id not in self.held}


def _age(db: Database, job_id: str, seconds: float) -> None:
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.updated_at = utcnow() - timedelta(seconds=seconds)


def _submit(jobs: JobService, who: Who, settings: Settings, tiny_bert: Path, tmp: Path) -> str:
    ref = register_dataset(settings, tiny_bert, tmp)
    request = TrainRequest(train_file=ref, base_model="tiny-bert")
    return str(jobs.submit(who, request, Ctx()).task_id)


def test_waiting_jobs_are_not_sent_again_every_sweep(
    db: Database,
    settings: Settings,
    audit: object,
    people: dict[str, Who],
    tiny_bert: Path,
    tmp_path: Path,
) -> None:
    queue = TrackingQueue()
    jobs = JobService(db, settings, queue, audit)  # type: ignore[arg-type]
    waiting = _submit(jobs, people["alice"], settings, tiny_bert, tmp_path)
    stale = settings.queue.stale_after_seconds + 1
    for _ in range(3):  # many sweep intervals pass while it waits behind others
        _age(db, waiting, stale)
        assert requeue_stale(db, settings, queue) == []
    assert queue.sent == [(waiting, "cpu")]  # sent once, at submit
    queue.held.clear()  # the broker lost its data
    _age(db, waiting, stale)
    assert requeue_stale(db, settings, queue) == [waiting]
    assert queue.sent[-1] == (waiting, "cpu")


def test_a_job_never_sent_is_deferred_then_sent_by_the_sweep(
    db: Database,
    settings: Settings,
    audit: object,
    people: dict[str, Who],
    tiny_bert: Path,
    tmp_path: Path,
) -> None:
    queue = TrackingQueue()
    queue.broken = True
    jobs = JobService(db, settings, queue, audit)  # type: ignore[arg-type]
    job_id = _submit(jobs, people["alice"], settings, tiny_bert, tmp_path)
    assert jobs.get(people["alice"], job_id).dispatch == "deferred"
    queue.broken = False
    _age(db, job_id, settings.queue.stale_after_seconds + 1)
    assert requeue_stale(db, settings, queue) == [job_id]
    assert jobs.get(people["alice"], job_id).dispatch == "sent"


@pytest.mark.integration
def test_the_celery_queue_marks_what_it_sent_in_redis(tmp_path: Path) -> None:
    import redis

    settings = Settings(queue=QueueSettings(broker_url="redis://127.0.0.1:6379/15"))
    queue = CeleryJobQueue(create_celery_app(settings))
    assert isinstance(queue, TrackedQueue)
    sent, other = f"t-{uuid.uuid4()}", f"t-{uuid.uuid4()}"
    client = redis.Redis.from_url(settings.queue.broker_url)
    try:
        queue.enqueue(sent, "cpu")
        assert queue.forgotten([sent, other]) == {other}
        assert 0 < client.ttl(SENT_MARKER + sent) <= settings.queue.visibility_timeout
        client.delete(SENT_MARKER + sent)  # what a Redis restarted without data looks like
        assert queue.forgotten([sent]) == {sent}
    finally:
        client.delete(SENT_MARKER + sent)
        client.delete("cpu")  # the test's message, in its own database
