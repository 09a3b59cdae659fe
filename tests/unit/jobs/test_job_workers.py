"""Workers announce their queues in Redis (real Redis on 127.0.0.1:6379, database 13): a key per
worker with a TTL, renewed by a thread; a submit for a queue nobody serves is refused with 409
naming the queue, or (``queue.refuse_unserved`` off) accepted with a warning in the view."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.jobs_fakes import Ctx, FakeQueue, Who, register_dataset

from loralab.audit.log import AuditLog
from loralab.errors import Conflict
from loralab.infra.db import Database
from loralab.infra.threads import every
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.jobs.workers import PREFIX, Heartbeat, RedisWorkers
from loralab.settings import Settings

URL = "redis://127.0.0.1:6379/13"


@pytest.fixture()
def workers() -> Iterator[RedisWorkers]:
    found = RedisWorkers(URL, ttl_seconds=1)
    try:
        found.client().ping()
    except Exception:  # noqa: BLE001
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield found
    for key in found.client().scan_iter(match=PREFIX + "test-*"):
        found.client().delete(key)


def name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_an_announced_queue_is_served_until_its_key_expires(workers: RedisWorkers) -> None:
    me = name()
    workers.announce(me, ["cpu"])
    assert workers.live()[me] == ["cpu"]
    assert 0 < workers.client().ttl(PREFIX + me) <= 1
    time.sleep(1.6)
    assert me not in workers.live()


def test_a_heartbeat_renews_the_key_and_stops_renewing_on_stop(workers: RedisWorkers) -> None:
    me = name()
    beat = Heartbeat(workers, me, ["mps", "mps"]).start()
    try:
        time.sleep(2.5)  # more than twice the TTL: alive only because it is renewed
        assert workers.live().get(me) == ["mps"]
    finally:
        beat.stop()
    time.sleep(1.6)
    assert me not in workers.live()


def test_redis_down_means_unknown_not_unserved() -> None:
    assert RedisWorkers("redis://127.0.0.1:1/0", ttl_seconds=5).serves("cpu") is None


@pytest.fixture()
def submit(
    db: Database, settings: Settings, people: dict[str, Who], tiny_bert: Path, tmp_path: Path
) -> Iterator[tuple[Settings, str]]:
    yield settings, register_dataset(settings, tiny_bert, tmp_path)


def service(db: Database, settings: Settings, workers: RedisWorkers) -> JobService:
    return JobService(db, settings, FakeQueue(), AuditLog(db), workers)


def request(ref: str, device: str) -> TrainRequest:
    return TrainRequest(train_file=ref, base_model="tiny-bert", device=device)  # type: ignore[arg-type]


def test_a_job_for_a_queue_no_live_worker_serves_is_refused_naming_the_queue(
    db: Database, submit: tuple[Settings, str], people: dict[str, Who], workers: RedisWorkers
) -> None:
    settings, ref = submit
    me = name()
    lasting = RedisWorkers(URL, ttl_seconds=60)  # outlives a slow submit on a busy machine
    lasting.announce(me, ["cpu"])
    jobs = service(db, settings, lasting)
    try:
        with pytest.raises(Conflict, match="no worker serves the cuda queue"):
            jobs.submit(people["alice"], request(ref, "cuda"), Ctx())
        assert jobs.list(people["alice"]) == []  # nothing was queued
        assert jobs.submit(people["alice"], request(ref, "cpu"), Ctx()).state == "queued"
    finally:
        workers.client().delete(PREFIX + me)


def test_with_refusal_off_the_job_is_accepted_and_its_view_says_why_it_waits(
    db: Database, submit: tuple[Settings, str], people: dict[str, Who], workers: RedisWorkers
) -> None:
    settings, ref = submit
    lenient = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"refuse_unserved": False})}
    )
    view = service(db, lenient, workers).submit(people["alice"], request(ref, "cuda"), Ctx())
    assert view.state == "queued"
    assert any("no worker serves the cuda queue" in w for w in view.warnings)
    again = service(db, lenient, workers).get(people["alice"], view.task_id)
    assert any("no worker serves the cuda queue" in w for w in again.warnings)


def test_every_retries_after_a_failure_and_ends_when_stopped() -> None:
    calls: list[int] = []
    stop = threading.Event()

    def action() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("database gone")  # logged; the next turn runs anyway
        if len(calls) == 3:
            stop.set()

    thread = every(0.01, action, stop, name="test-every", failure="test")
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(calls) == 3


class CountingDirectory:
    """Answers ``serves`` with ``answer`` and counts the questions."""

    def __init__(self, answer: bool | None) -> None:
        self.answer, self.asked = answer, 0

    def serves(self, queue: str) -> bool | None:
        self.asked += 1
        return self.answer


@pytest.mark.parametrize("answer", [True, False, None])
def test_a_live_worker_is_asked_for_once_a_second_a_missing_one_every_time(
    db: Database, settings: Settings, people: dict[str, Who], tiny_bert: Path, tmp_path: Path,
    answer: bool | None,
) -> None:  # fmt: skip
    """A yes outlives its worker by the heartbeat's TTL anyway; a no is asked again, so a
    worker that just started is seen by the next submit."""
    ref = register_dataset(settings, tiny_bert, tmp_path)
    lenient = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"refuse_unserved": False})}
    )
    directory = CountingDirectory(answer)
    jobs = JobService(db, lenient, FakeQueue(), AuditLog(db), directory)
    for who in ("alice", "bob", "root"):  # each may have 3 active jobs
        jobs.submit(people[who], request(ref, "cpu"), Ctx())
    assert directory.asked == (1 if answer else 3)
    if answer:
        jobs._served_until["cpu"] = 0.0  # a second later
        jobs.submit(people["alice"], request(ref, "cpu"), Ctx())
        assert directory.asked == 2
