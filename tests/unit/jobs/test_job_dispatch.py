"""Dispatch: a job accepted while the broker is down is sent by the recovery sweep later, and a
job whose message still waits in the broker is never sent again (issue 11, class 10)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.jobs_fakes import Ctx, FakeQueue, Who, register_dataset

from loralab.infra.celery_app import create_celery_app
from loralab.infra.db import Database, Job, utcnow
from loralab.infra.queue import SENT_MARKER, SENT_SET, CeleryJobQueue, TrackedQueue
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


@pytest.fixture()
def celery_queue() -> Iterator[tuple[CeleryJobQueue, Any]]:
    """The Celery queue on the shared Redis, database 15, and a client of it."""
    import redis

    settings = Settings(queue=QueueSettings(broker_url="redis://127.0.0.1:6379/15"))
    client = redis.Redis.from_url(settings.queue.broker_url)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield CeleryJobQueue(create_celery_app(settings)), client
    client.delete("cpu")  # the tests' messages, in their own database


@pytest.mark.integration
def test_the_celery_queue_marks_what_it_sent_in_redis(
    celery_queue: tuple[CeleryJobQueue, Any],
) -> None:
    queue, client = celery_queue
    assert isinstance(queue, TrackedQueue)
    sent, other = f"t-{uuid.uuid4()}", f"t-{uuid.uuid4()}"
    try:
        queue.enqueue(sent, "cpu")
        assert queue.forgotten([sent, other]) == {other}
        expiry = client.zscore(SENT_SET, sent)
        assert expiry is not None
        assert 0 < expiry - time.time() <= queue.marker_seconds
        assert 0 < client.ttl(SENT_SET) <= queue.marker_seconds  # the set goes with its marks
        client.delete(SENT_SET)  # what a Redis restarted without data looks like
        assert queue.forgotten([sent]) == {sent}
    finally:
        client.zrem(SENT_SET, sent)


@pytest.mark.integration
def test_markers_add_no_key_per_job_and_expired_ones_are_dropped(
    celery_queue: tuple[CeleryJobQueue, Any],
) -> None:
    """The broker's keyspace stays as small as its workers (SCAN reads worker heartbeats)."""
    queue, client = celery_queue
    client.delete(SENT_SET)
    stale = f"t-{uuid.uuid4()}"
    client.zadd(SENT_SET, {stale: time.time() - 1})  # a marker past its time
    assert queue.forgotten([stale]) == {stale}
    sent = [f"t-{uuid.uuid4()}" for _ in range(21)]
    queue.enqueue(sent[0], "cpu")  # the set, the queue's list and its binding now exist
    assert client.zscore(SENT_SET, stale) is None
    keys = client.dbsize()
    for job_id in sent[1:]:
        queue.enqueue(job_id, "cpu")
    assert client.dbsize() == keys
    assert queue.forgotten(sent) == set()
    client.zrem(SENT_SET, *sent)


@pytest.mark.integration
def test_markers_of_an_older_version_still_count(
    celery_queue: tuple[CeleryJobQueue, Any],
) -> None:
    """Jobs marked as one key each before an upgrade are not sent twice after it."""
    queue, client = celery_queue
    old = f"t-{uuid.uuid4()}"
    client.set(SENT_MARKER + old, "1", ex=60)
    client.lpush("cpu", json.dumps({"headers": {"id": old}}))  # its message, still waiting
    try:
        assert queue.forgotten([old]) == set()
        client.delete(SENT_MARKER + old)
        assert queue.forgotten([old]) == {old}
    finally:
        client.delete(SENT_MARKER + old)


@pytest.mark.integration
def test_a_marked_job_whose_message_the_broker_lost_is_forgotten(
    celery_queue: tuple[CeleryJobQueue, Any],
) -> None:
    """Marked, but its message popped by a worker that died (Redis handed it to a dead
    connection): sent again. Taken by a live worker (in the unacknowledged hash): held."""
    queue, client = celery_queue
    lost, taken, waiting = (f"t-{uuid.uuid4()}" for _ in range(3))
    client.delete("cpu")
    try:
        for job_id in (lost, taken, waiting):
            queue.enqueue(job_id, "cpu")
        assert queue.forgotten([lost, taken, waiting]) == set()
        messages = [client.rpop("cpu") for _ in range(2)]  # the oldest two: lost, taken
        client.hset("unacked", "tag-1", b"[" + messages[1] + b', "", "cpu"]')
        assert queue.forgotten([lost, taken, waiting]) == {lost}
    finally:
        client.zrem(SENT_SET, lost, taken, waiting)
        client.hdel("unacked", "tag-1")
