"""A job has one run, and no run stays open after its job ends: a retry without a checkpoint
closes the orphan (MLflow KILLED, folder deleted) and trains the same run id again; giving up,
cancelling and failing end the run and its MLflow run (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tests.helpers.jobs_fakes import Ctx, Who, register_dataset

from loralab.errors import InvalidInput
from loralab.infra.db import Database, Job
from loralab.infra.tracking import MlflowTracker, tracking_uri
from loralab.jobs.execution import claim_job, execute_job, write_job
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import Settings
from loralab.training.config import TrainConfig
from loralab.training.runs import RunPaths, create_run, read_state, update_state


@pytest.fixture()
def job_id(
    jobs: JobService, people: dict[str, Who], settings: Settings, tiny_bert: Path, tmp_path: Path
) -> str:
    ref = register_dataset(settings, tiny_bert, tmp_path)
    request = TrainRequest(train_file=ref, base_model="tiny-bert", experiment="orphans")
    return str(jobs.submit(people["alice"], request, Ctx()).task_id)


def killed_attempt(db: Database, settings: Settings, job_id: str) -> tuple[RunPaths, str]:
    """What a worker SIGKILLed before its first checkpoint leaves: the job leased and naming
    its run, the run folder ``running`` and an MLflow run RUNNING; the lease then goes stale."""
    claim = claim_job(db, settings.queue, job_id, "dead:1")
    assert claim is not None
    run = create_run(settings.storage.results_dir, TrainConfig(**claim.config))
    write_job(db, claim, run_id=run.run_id, state="training")
    tracker = MlflowTracker.from_settings(settings)
    tracker_id = tracker.start_run("orphans", run.run_id, None)
    update_state(run, status="running", tracker_run_id=tracker_id)
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.worker = None  # the lease is free (as if stale)
    return run, tracker_id


def mlflow_status(settings: Settings, tracker_id: str) -> str:
    return str(MlflowClient(tracking_uri(settings)).get_run(tracker_id).info.status)


def row(db: Database, job_id: str) -> Job:
    with db.session() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def test_a_retry_without_checkpoint_closes_the_orphan_and_trains_the_same_run_id(
    db: Database, settings: Settings, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, tracker_id = killed_attempt(db, settings, job_id)
    seen: dict[str, Any] = {}

    def train(*_: Any, run_id: str | None = None, **__: Any) -> Any:
        seen["run_id"], seen["folder_left"] = run_id, run.root.exists()
        raise InvalidInput("stop here: training itself is not under test")

    monkeypatch.setattr("loralab.experiments.service.train", train)
    execute_job(db, settings, job_id, "w2:2")
    assert seen == {"run_id": run.run_id, "folder_left": False}
    assert mlflow_status(settings, tracker_id) == "KILLED"
    done = row(db, job_id)
    assert done.state == "failed" and done.attempts == 2
    folders = list(settings.storage.results_dir.glob("orphans/*"))
    assert folders == []  # the failed retry made no folder (the fake trained nothing)


def test_giving_up_after_max_attempts_ends_the_run_and_its_mlflow_run(
    db: Database, settings: Settings, job_id: str
) -> None:
    run, tracker_id = killed_attempt(db, settings, job_id)
    with db.session() as session:
        found = session.get(Job, job_id)
        assert found is not None
        found.attempts = settings.queue.max_attempts
    execute_job(db, settings, job_id, "w2:2")
    done = row(db, job_id)
    assert done.state == "failed" and done.error and "gave up" in done.error
    assert read_state(run)["status"] == "failed"
    assert mlflow_status(settings, tracker_id) == "FAILED"


def test_cancelled_with_a_dead_workers_run_ends_it_killed(
    db: Database, settings: Settings, job_id: str
) -> None:
    run, tracker_id = killed_attempt(db, settings, job_id)
    with db.session() as session:
        found = session.get(Job, job_id)
        assert found is not None
        found.cancel_requested = True
    execute_job(db, settings, job_id, "w2:2")
    assert row(db, job_id).state == "cancelled"
    assert read_state(run)["status"] == "stopped"
    assert mlflow_status(settings, tracker_id) == "KILLED"


def test_a_job_cancelled_while_queued_closes_its_run_on_the_next_delivery(
    db: Database, settings: Settings, job_id: str, jobs: JobService, people: dict[str, Who]
) -> None:
    run, tracker_id = killed_attempt(db, settings, job_id)
    with db.session() as session:
        found = session.get(Job, job_id)
        assert found is not None
        found.state = "queued"  # the recovery sweep took it back
    jobs.cancel(people["alice"], job_id, Ctx())
    execute_job(db, settings, job_id, "w2:2")  # its message arrives: nothing to claim
    assert read_state(run)["status"] == "stopped"
    assert mlflow_status(settings, tracker_id) == "KILLED"


def test_a_run_that_ended_itself_is_not_touched(
    db: Database, settings: Settings, job_id: str
) -> None:
    run, tracker_id = killed_attempt(db, settings, job_id)
    update_state(run, status="succeeded")
    with db.session() as session:
        found = session.get(Job, job_id)
        assert found is not None
        found.state = "succeeded"
    execute_job(db, settings, job_id, "w2:2")
    assert read_state(run)["status"] == "succeeded"
    assert mlflow_status(settings, tracker_id) == "RUNNING"  # untouched: not asked
