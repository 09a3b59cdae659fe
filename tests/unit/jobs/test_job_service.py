"""JobService for users: submit, limits, visibility, listing and cancel rules."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, select
from tests.helpers.jobs_fakes import Ctx, FakeQueue, Who, last_record, register_dataset

from loralab.audit.log import AuditLog
from loralab.errors import Conflict, InvalidInput, NotFound, PermissionDenied, TooManyRequests
from loralab.infra.db import Database, Job
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import Settings


@pytest.fixture()
def ref(settings: Settings, tiny_bert: Path, tmp_path: Path) -> str:
    return register_dataset(settings, tiny_bert, tmp_path)


def request(ref: str, **fields: object) -> TrainRequest:
    return TrainRequest(train_file=ref, base_model="tiny-bert", **fields)  # type: ignore[arg-type]


def set_state(db: Database, job_id: str, state: str) -> None:
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.state = state


def test_submit_queues_after_commit_and_audits(
    jobs: JobService, people: dict[str, Who], queue: FakeQueue, audit: AuditLog, ref: str
) -> None:
    view = jobs.submit(people["alice"], request(ref, device="cuda", model_name="m1"), Ctx())
    assert view.state == "queued" and view.owner == "alice"
    assert len(view.task_id) == 36 and view.queue == "cuda"
    assert view.queue_position == 1 and view.attempts == 0
    assert view.base_model == "tiny-bert" and view.model_name == "m1"
    assert [s.status for s in view.steps][:2] == ["current", "pending"]
    assert queue.sent == [(view.task_id, "cuda")]
    record = last_record(audit)
    assert record.action == "job.submit"
    assert record.outcome == "allowed" and record.username == "alice"
    assert record.target == f"job:{view.task_id}"
    assert record.client == "127.0.0.1" and record.request_id == "req-1"


def test_queue_follows_the_device_and_positions_count_up(
    jobs: JobService, people: dict[str, Who], ref: str
) -> None:
    first = jobs.submit(people["alice"], request(ref), Ctx())
    second = jobs.submit(people["bob"], request(ref, device="cpu"), Ctx())
    mps = jobs.submit(people["bob"], request(ref, device="mps"), Ctx())
    assert (first.queue, second.queue, mps.queue) == ("cpu", "cpu", "mps")
    assert second.queue_position == 2 and mps.queue_position == 1


def test_per_user_limit_of_active_jobs(
    jobs: JobService,
    people: dict[str, Who],
    db: Database,
    audit: AuditLog,
    queue: FakeQueue,
    ref: str,
) -> None:
    alice = people["alice"]
    ids = [jobs.submit(alice, request(ref), Ctx()).task_id for _ in range(3)]
    with pytest.raises(TooManyRequests, match="3 active jobs") as err:
        jobs.submit(alice, request(ref), Ctx())
    assert err.value.retry_after
    assert last_record(audit).outcome == "denied" and len(queue.sent) == 3
    assert len(jobs.list(alice)) == 3  # nothing half-written
    jobs.submit(people["bob"], request(ref), Ctx())  # the limit is per user
    set_state(db, ids[0], "succeeded")  # a finished job frees a slot
    jobs.submit(alice, request(ref), Ctx())


def test_a_missing_dataset_is_refused_at_submit(
    jobs: JobService, people: dict[str, Who], queue: FakeQueue
) -> None:
    with pytest.raises(InvalidInput, match="train_file"):
        jobs.submit(people["alice"], request("nothere@latest"), Ctx())
    assert queue.sent == []


def test_a_broker_outage_leaves_the_job_queued_for_recovery(
    jobs: JobService, people: dict[str, Who], queue: FakeQueue, ref: str, db: Database
) -> None:
    queue.broken = True
    view = jobs.submit(people["alice"], request(ref), Ctx())
    assert view.state == "queued" and view.dispatch == "deferred"
    with db.session() as session:
        assert session.scalar(select(Job.published_at).where(Job.id == view.task_id)) is None


def test_a_submit_takes_three_transactions_and_stamps_what_the_broker_took(
    jobs: JobService, people: dict[str, Who], queue: FakeQueue, ref: str, db: Database
) -> None:
    """The dataset check, the row with its audit record, then (after the publish) the
    ``published_at`` stamp with the view's queue position: one connection checkout each."""
    checkouts: list[object] = []

    def count(*args: object) -> None:
        checkouts.append(args)

    event.listen(db.engine.pool, "checkout", count)
    try:
        view = jobs.submit(people["alice"], request(ref), Ctx())
    finally:
        event.remove(db.engine.pool, "checkout", count)
    assert len(checkouts) == 3
    assert view.dispatch == "sent" and view.queue_position == 1
    with db.session() as session:
        stamped = session.scalar(select(Job.published_at).where(Job.id == view.task_id))
    assert stamped is not None


def test_owner_and_admin_see_a_job_others_get_the_same_not_found(
    jobs: JobService, people: dict[str, Who], ref: str
) -> None:
    job_id = jobs.submit(people["alice"], request(ref), Ctx()).task_id
    assert jobs.get(people["alice"], job_id).task_id == job_id
    assert jobs.get(people["root"], job_id).owner == "alice"
    with pytest.raises(NotFound) as other:
        jobs.get(people["bob"], job_id)
    missing_id = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(NotFound) as missing:
        jobs.get(people["bob"], missing_id)
    assert str(other.value).replace(job_id, "ID") == str(missing.value).replace(missing_id, "ID")
    with pytest.raises(NotFound):
        jobs.cancel(people["bob"], job_id, Ctx())


def test_listing_own_jobs_and_admin_listing_others(
    jobs: JobService, people: dict[str, Who], db: Database, ref: str
) -> None:
    a1 = jobs.submit(people["alice"], request(ref), Ctx()).task_id
    a2 = jobs.submit(people["alice"], request(ref), Ctx()).task_id
    jobs.submit(people["bob"], request(ref), Ctx())
    set_state(db, a1, "failed")
    assert {j.task_id for j in jobs.list(people["alice"])} == {a1, a2}
    assert [j.task_id for j in jobs.list(people["alice"], state="failed")] == [a1]
    assert len(jobs.list(people["alice"], user="alice", limit=1)) == 1
    assert {j.owner for j in jobs.list(people["root"], user="alice")} == {"alice"}
    assert jobs.list(people["root"]) == []
    assert {j.owner for j in jobs.list(people["root"], everyone=True)} == {"alice", "bob"}
    assert len(jobs.list(people["root"], everyone=True)) == 3
    with pytest.raises(PermissionDenied):
        jobs.list(people["bob"], user="alice")
    with pytest.raises(PermissionDenied):
        jobs.list(people["bob"], everyone=True)
    with pytest.raises(InvalidInput, match="state"):
        jobs.list(people["alice"], state="sleeping")


def test_cancel_queued_at_once_running_by_request_finished_conflict(
    jobs: JobService, people: dict[str, Who], db: Database, audit: AuditLog, ref: str
) -> None:
    alice = people["alice"]
    queued = jobs.submit(alice, request(ref), Ctx()).task_id
    view = jobs.cancel(alice, queued, Ctx())
    assert view.state == "cancelled" and view.finished_at
    assert last_record(audit).action == "job.cancel"
    running = jobs.submit(alice, request(ref), Ctx()).task_id
    set_state(db, running, "training")
    view = jobs.cancel(people["root"], running, Ctx())  # an admin may cancel any job
    assert view.state == "training" and view.cancel_requested is True
    with pytest.raises(Conflict, match="already cancelled"):
        jobs.cancel(alice, queued, Ctx())
    assert last_record(audit).outcome == "denied"


def test_concurrent_submits_never_pass_the_per_user_limit(
    jobs: JobService, people: dict[str, Who], db: Database, queue: FakeQueue, ref: str
) -> None:
    """Twelve submits of one user at the same moment: exactly three are queued, the rest are
    refused, and only the queued ones reach the broker. (The fake audit log takes no lock, so
    only the limit itself keeps the submits apart.)"""
    alice, n = people["alice"], 12
    start = threading.Barrier(n)

    def submit(_: int) -> str:
        start.wait()
        try:
            return str(jobs.submit(alice, request(ref), Ctx()).task_id)
        except TooManyRequests:
            return "refused"

    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(submit, range(n)))
    queued = {o for o in outcomes if o != "refused"}
    assert len(queued) == 3 and outcomes.count("refused") == n - 3
    with db.session() as session:
        stored = set(session.scalars(select(Job.id).where(Job.owner_id == alice.id)))
    assert stored == queued and {job_id for job_id, _ in queue.sent} == queued
