"""The job queue with real parts: a dedicated redis-server, a migrated SQLite database, the real
audit log, real Celery worker processes training a tiny BERT. Workers are killed with SIGKILL,
Redis is restarted, jobs are cancelled; a worker migrates an empty database before it starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from tests.integration.services import (
    RedisServer,
    kill_group,
    platform_env,
    private_pg_database,
    start_worker,
    wait_for,
)

from loralab.audit.log import AuditLog
from loralab.entrypoints.worker.app import create_celery
from loralab.identity import Actor, RequestContext
from loralab.infra.db import Database, Job, User
from loralab.infra.migrate import current_revision, head_revision, upgrade_database
from loralab.infra.queue import CeleryJobQueue
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.jobs.views import JobView
from loralab.settings import Settings
from loralab.training.checkpoints import MARKER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CTX = RequestContext(client="test")
FAST = {"heartbeat_seconds": "0.5", "stale_after_seconds": "3"}


@dataclass
class Stack:
    tmp: Path
    redis: RedisServer
    db: Database
    settings: Settings
    alice: Actor
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def jobs(self) -> JobService:
        queue = CeleryJobQueue(create_celery(self.settings))
        return JobService(self.db, self.settings, queue, AuditLog(self.db))

    def start_worker(
        self, extra_env: dict[str, str] | None = None, **queue: str
    ) -> subprocess.Popen[bytes]:
        """A whole worker (parent + pool child) in its own process group."""
        env = dict(self.env)
        env.update({f"LORALAB_QUEUE__{k.upper()}": v for k, v in {**FAST, **queue}.items()})
        env.update(extra_env or {})
        log = self.tmp / f"worker-{len(self.workers)}.log"
        process = start_worker(env, self.tmp, log, name=f"w{len(self.workers)}")
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the parent and its children at once (no warm shutdown, no acks)."""
        kill_group(process)

    def row(self, job_id: str) -> Job:
        with self.db.session() as session:
            row = session.get(Job, job_id)
            assert row is not None
            return row

    def wait_state(self, job_id: str, wanted: set[str], seconds: float = 90) -> Job:
        try:
            return wait_for(
                lambda: (r := self.row(job_id)).state in wanted and r, seconds, str(wanted)
            )
        except AssertionError:
            print(self.logs())
            raise

    def logs(self) -> str:
        tails = [p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("worker-*"))]
        return "\n----\n".join(tails)


def build_stack(tmp: Path, tiny_bert: Path, db_url: str | None = None) -> Stack:
    """Redis, a migrated database (SQLite unless ``db_url``), alice, a registered dataset."""
    from tests.conftest import make_rows, write_csv

    from loralab.datasets.service import DataSpec, register_dataset
    from loralab.settings import QueueSettings, RegistrySettings, StorageSettings

    redis = RedisServer(tmp / "redis")
    redis.start()
    results, models = tmp / "results", tiny_bert.parent
    results.mkdir()
    settings = Settings(
        storage=StorageSettings(results_dir=results, models_dir=models),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        queue=QueueSettings(broker_url=redis.url, heartbeat_seconds=0.5, stale_after_seconds=3),
        db={"url": db_url or f"sqlite:///{tmp / 'loralab.db'}"},  # type: ignore[arg-type]
    )
    upgrade_database(settings.db_url)
    db = Database(settings.db_url)
    with db.session() as session:
        user = User(username="alice", password_hash="x", role="user")
        session.add(user)
        session.flush()
        alice = Actor(user.id, "alice", "user")
    data = write_csv(tmp / "reviews.csv", make_rows(120))
    register_dataset(
        settings, "reviews", data, user="alice", spec=DataSpec(base_model=str(tiny_bert))
    )
    env = platform_env(
        broker_url=redis.url,
        db_url=settings.db_url,
        results=results,
        models=models,
        cards=tmp / "cards",
    )
    return Stack(tmp, redis, db, settings, alice, env)


def close_stack(built: Stack) -> None:
    for process in built.workers:
        built.kill_worker(process)
    built.redis.kill()
    built.db.dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Stack]:
    built = build_stack(tmp_path_factory.mktemp("queue"), tiny_bert)
    yield built
    close_stack(built)


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Stack]:
    """The same parts on a PostgreSQL database of its own (skips when no server answers)."""
    with private_pg_database() as url:
        built = build_stack(tmp_path_factory.mktemp("queue-pg"), tiny_bert, url)
        try:
            yield built
        finally:
            close_stack(built)


def end_cleanly(stack: Stack) -> None:
    """No worker running and no job left active."""
    for process in stack.workers:
        stack.kill_worker(process)
    stack.redis.await_no_consumer()
    with stack.db.session() as session:
        session.query(Job).filter(Job.state.not_in(["succeeded", "failed", "cancelled"])).update(
            {"state": "cancelled"}
        )


@pytest.fixture()
def cleanup(stack: Stack) -> Iterator[None]:
    yield
    end_cleanly(stack)


@pytest.fixture()
def pg_cleanup(pg_stack: Stack) -> Iterator[None]:
    yield
    end_cleanly(pg_stack)


def train_request(name: str, steps: int = 60) -> TrainRequest:
    return TrainRequest(
        train_file="reviews@latest",
        base_model="tiny-bert",
        experiment=name,
        model_name=name,
        max_steps=steps,
        eval_steps=10,
        batch_size=8,
        learning_rate=0.02,
        validation_split=0.2,
        early_stopping_patience=0,
    )


def versions(stack: Stack, name: str) -> list[str]:
    return sorted(p.stem for p in (stack.tmp / "cards").glob(f"{name}@*.json"))


def checkpoint_of(stack: Stack, job_id: str) -> int | None:
    """The step of the job's first complete checkpoint on disk, if any."""
    run_id = stack.row(job_id).run_id
    if not run_id:
        return None
    found = sorted(
        stack.settings.storage.results_dir.glob(f"*/{run_id}/artifacts/checkpoints/*/{MARKER}")
    )
    return int(found[0].parent.name.split("-")[1]) if found else None


def run_to_success(stack: Stack, name: str) -> None:
    """Submit, start a worker, see the job pass through the running states and succeed."""
    jobs = stack.jobs()
    view = jobs.submit(stack.alice, train_request(name), CTX)
    assert view.state == "queued"
    stack.start_worker()
    seen: list[str] = []

    def finished() -> bool:
        state = stack.row(view.task_id).state
        if not seen or seen[-1] != state:
            seen.append(state)
        return state in {"succeeded", "failed", "cancelled"}

    wait_for(finished, 120, "the job to finish")
    done = jobs.get(stack.alice, view.task_id)
    assert done.state == "succeeded", (done, stack.logs())
    assert {"validating", "training", "registering"} <= set(seen), seen
    assert done.model_version == f"{name}@1" and versions(stack, name) == [f"{name}@1"]
    assert done.mlflow_run_id and done.run_id and done.attempts == 1
    assert done.progress.step == 60 and done.progress.percent == 100.0
    assert all(step.status == "done" for step in done.steps)
    audit = AuditLog(stack.db)
    submits, _ = audit.query(action="job.submit", username="alice")
    assert f"job:{view.task_id}" in {r.target for r in submits}
    assert audit.verify().ok
    assert_no_models_dir_path(stack, done)


def assert_no_models_dir_path(stack: Stack, done: JobView) -> None:
    """The job stored the model's folder name; the worker resolved it only to train. Nothing
    users read (job view and row, card, run state and config, MLflow params and tags) holds
    the server's models_dir path, so nothing needs scrubbing."""
    from mlflow.tracking import MlflowClient

    from loralab.infra.tracking import tracking_uri

    models = stack.settings.storage.models_dir
    assert models is not None
    (run,) = stack.settings.storage.results_dir.glob(f"*/{done.run_id}")
    card = stack.tmp / "cards" / f"{done.model_version}.json"
    mlflow = MlflowClient(tracking_uri(stack.settings)).get_run(str(done.mlflow_run_id)).data
    texts = {
        "view": json.dumps(asdict(done)),
        "row": json.dumps(stack.row(done.task_id).config),
        "card": card.read_text(),
        "state": (run / "run.json").read_text(),
        "config": (run / "config.yaml").read_text(),
        "mlflow": json.dumps([mlflow.params, mlflow.tags]),
    }
    assert json.loads(texts["card"])["base_model"] == "tiny-bert"
    assert mlflow.params["base_model"] == "tiny-bert"
    for where, text in texts.items():
        for path in {str(models), str(models.resolve())}:
            assert path not in text, f"{where} holds the models_dir path: {text}"


@pytest.mark.usefixtures("cleanup")
def test_a_job_runs_queued_to_succeeded_and_registers_a_model(stack: Stack) -> None:
    run_to_success(stack, "happy")


@pytest.mark.usefixtures("pg_cleanup")
def test_a_job_runs_queued_to_succeeded_on_postgresql(pg_stack: Stack) -> None:
    run_to_success(pg_stack, "happypg")


@pytest.mark.usefixtures("cleanup")
def test_a_worker_migrates_an_empty_database_before_taking_jobs(stack: Stack) -> None:
    url = f"sqlite:///{stack.tmp / 'empty' / 'loralab.db'}"
    assert current_revision(url) is None
    stack.start_worker(extra_env={"LORALAB_DB__URL": url})
    log = stack.tmp / f"worker-{len(stack.workers) - 1}.log"
    wait_for(lambda: current_revision(url) == head_revision(), 60, "the worker to migrate")
    wait_for(lambda: "ready" in log.read_text(errors="replace"), 60, "the worker to be ready")


@pytest.mark.usefixtures("cleanup")
def test_kill_9_of_the_worker_resumes_from_the_checkpoint_and_succeeds_once(stack: Stack) -> None:
    jobs = stack.jobs()
    job_id = jobs.submit(stack.alice, train_request("crash", steps=100), CTX).task_id
    first = stack.start_worker()
    saved_at = wait_for(lambda: checkpoint_of(stack, job_id), 120, "a first checkpoint")
    before = stack.row(job_id)
    stack.kill_worker(first)
    assert before.state == "training" and before.attempts == 1
    stack.start_worker()
    done = stack.wait_state(job_id, {"succeeded", "failed", "cancelled"}, 120)
    assert done.state == "succeeded", (done.error, stack.logs())
    assert done.run_id == before.run_id and done.attempts == 2
    assert done.model_version == "crash@1" and versions(stack, "crash") == ["crash@1"]
    # The second attempt trained on from the checkpoint: its evaluations all come after it.
    metrics = next(stack.settings.storage.results_dir.glob(f"*/{done.run_id}/metrics.json"))
    evaluated = [int(h["step"]) for h in json.loads(metrics.read_text())["history"]]
    assert evaluated and min(evaluated) > saved_at, (saved_at, evaluated)


@pytest.mark.usefixtures("cleanup")
def test_jobs_queued_across_a_redis_restart_still_run(stack: Stack) -> None:
    jobs = stack.jobs()
    kept = jobs.submit(stack.alice, train_request("kept", steps=20), CTX).task_id
    stack.redis.kill()  # SIGKILL: only the fsync'd append-only file survives
    stack.redis.start()
    lost = jobs.submit(stack.alice, train_request("lost", steps=20), CTX).task_id
    stack.redis.kill()
    shutil.rmtree(stack.redis.folder)  # a Redis without persistence: the message is gone
    stack.redis.start()
    stack.start_worker()
    for job_id in (kept, lost):
        row = stack.wait_state(job_id, {"succeeded", "failed", "cancelled"}, 120)
        assert row.state == "succeeded", (row.error, stack.logs())
        assert row.attempts == 1


@pytest.mark.usefixtures("cleanup")
def test_a_job_that_keeps_killing_its_worker_fails_after_max_attempts(stack: Stack) -> None:
    jobs = stack.jobs()
    job_id = jobs.submit(stack.alice, train_request("doomed", steps=400), CTX).task_id
    stack.start_worker(max_attempts="2")
    for attempt in (1, 2):
        row = wait_for(
            lambda a=attempt: (r := stack.row(job_id)).attempts == a and r.worker and r,
            120,
            f"attempt {attempt}",
        )
        os.kill(int(row.worker.rsplit(":", 1)[1]), signal.SIGKILL)  # the pool process only
    done = stack.wait_state(job_id, {"succeeded", "failed", "cancelled"}, 120)
    assert done.state == "failed", stack.logs()
    assert done.error == "gave up after 2 attempts: the job kept killing its worker"
    assert done.attempts == 3 and versions(stack, "doomed") == []


@pytest.mark.usefixtures("cleanup")
def test_cancelling_a_running_job_ends_it_cancelled(stack: Stack) -> None:
    jobs = stack.jobs()
    job_id = jobs.submit(stack.alice, train_request("stopme", steps=400), CTX).task_id
    stack.start_worker()
    wait_for(lambda: (stack.row(job_id).progress or {}).get("step"), 120, "training steps")
    view = jobs.cancel(stack.alice, job_id, CTX)
    assert view.cancel_requested is True
    done = stack.wait_state(job_id, {"succeeded", "failed", "cancelled"}, 60)
    assert done.state == "cancelled", (done.error, stack.logs())
    assert done.progress["step"] < 400 and versions(stack, "stopme") == []
    statuses = [s.status for s in jobs.get(stack.alice, job_id).steps]
    assert statuses[:2] == ["done", "done"] and "cancelled" in statuses[2:4]
    assert statuses[-1] == "skipped"
