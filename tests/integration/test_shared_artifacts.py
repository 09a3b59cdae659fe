"""Two machines that share only the MLflow server (its backend in PostgreSQL, its artifacts in
an S3-compatible bucket) and the model-card folder: machine A trains in a process of its own,
machine B (this process, another results home and cache) serves A's model version from the
artifact store, and resumes A's run after A died mid-training, in the same MLflow run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tests.integration.shared_services import (
    SharedStack,
    bucket_keys,
    mlflow_pg_database,
    shared_stack,
)

from loralab.experiments import service as experiments
from loralab.infra.artifacts import MANIFEST, CheckpointMirror, cache_dir
from loralab.infra.tracking import RUN_ID_TAG
from loralab.serving.service import PredictionService
from loralab.settings import Settings
from loralab.training import load_predictor
from loralab.training.checkpoints import MARKER, read_checkpoints
from loralab.training.runs import RunPaths, find_run, read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["the food was great great", "the phone was awful awful", "quite nice nice service"]

# Machine A: train (and register) in a process of its own; with a step to die at, the process
# kills itself there (SIGKILL: no cleanup, like a machine that lost power).
MACHINE_A = """
import json, os, signal, sys
from loralab.experiments import service
from loralab.settings import load_settings
from loralab.training import TrainConfig
from loralab.training.interfaces import NullProgress

class DieAt(NullProgress):
    def advance(self, step, values):
        if DIE_AT and step >= DIE_AT:
            os.kill(os.getpid(), signal.SIGKILL)

values, DIE_AT, run_id, name = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
result = service.train(
    load_settings(), TrainConfig(**values), DieAt(), run_id=run_id, model_name=name
)
print(result.status, result.tracker_run_id)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack]:
    with mlflow_pg_database() as db, shared_stack(tmp_path_factory.mktemp("stack"), db) as s:
        yield s


def machine(tmp: Path, name: str, stack: SharedStack) -> Settings:
    """One machine's settings: its own results home (and cache), the shared MLflow server and
    card folder (cards are files today; a database store would be shared the same way)."""
    return Settings.model_validate(
        {
            "storage": {"results_dir": tmp / name / "results"},
            "mlflow": {"tracking_uri": stack.tracking_uri},
            "registry": {"card_dir": tmp / "cards"},
            "serving": {"mode": "adapters", "onnx": False, "device": "cpu"},
        }
    )


def train_on_a(
    settings: Settings, config: dict[str, Any], *, run_id: str, model: str, die_at: int
) -> subprocess.CompletedProcess[str]:
    """``python -c MACHINE_A`` in machine A's own folder (it imports from there: never a
    folder that shadows a package, such as a dataset store named datasets)."""
    home = settings.storage.results_dir.parent
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "LORALAB_STORAGE__RESULTS_DIR": str(settings.storage.results_dir),
        "LORALAB_MLFLOW__TRACKING_URI": str(settings.mlflow.tracking_uri),
        "LORALAB_REGISTRY__CARD_DIR": str(settings.registry_card_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    args = [sys.executable, "-c", MACHINE_A, json.dumps(config), str(die_at), run_id, model]
    return subprocess.run(
        args, env=env, cwd=home, capture_output=True, text=True, timeout=300, check=False
    )


def tiny_config(tmp: Path, tiny_bert: Path, experiment: str, max_steps: int) -> dict[str, Any]:
    from tests.conftest import make_rows, write_csv

    return {
        "experiment": experiment,
        "base_model": str(tiny_bert),
        "train_file": str(write_csv(tmp / f"{experiment}.csv", make_rows(80))),
        "validation_split": 0.2,
        "max_steps": max_steps,
        "eval_steps": 2,
        "logging_steps": 2,
        "max_length": 16,
        "batch_size": 8,
        "lora_dropout": 0.0,
        "learning_rate": 0.02,
        "early_stopping_patience": 0,
    }


def answers(service: PredictionService, model: str) -> list[tuple[str, float]]:
    out = [service.predict_sync(text, model) for text in TEXTS]
    return [(a["label_name"], a["probability"]) for a in out]


def test_b_serves_a_version_trained_on_a_from_the_artifact_store(
    tmp_path: Path, tiny_bert: Path, stack: SharedStack
) -> None:
    a, b = machine(tmp_path, "a", stack), machine(tmp_path, "b", stack)
    config = tiny_config(tmp_path, tiny_bert, "shared-serve", max_steps=8)
    done = train_on_a(a, config, run_id="20260101-000000-aaaaaa", model="sent", die_at=0)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith("succeeded ")
    run_a = find_run(a.storage.results_dir, "20260101-000000-aaaaaa")
    assert read_state(run_a).get("registered_model") == "sent@1"

    # every checkpoint retention kept on A is in the store, and no other
    client = MlflowClient(stack.tracking_uri)
    mirror = CheckpointMirror(client, MARKER)
    kept = [path.name for path, _ in read_checkpoints(run_a.checkpoints)]
    assert 1 <= len(kept) < 4  # 4 were saved (steps 2, 4, 6, 8); retention deleted some
    assert mirror.complete(read_state(run_a)["tracker_run_id"]) == kept
    keys = bucket_keys(stack, "mlartifacts/")
    assert any(k.endswith(f"model/artifacts/run/{MANIFEST}") for k in keys)

    service = PredictionService(b)
    got = answers(service, "sent@1")
    entry = cache_dir(b) / "models" / "sent@1"
    assert service.resolver.resolve("sent@1").run.root == entry
    assert not (b.storage.results_dir / "shared-serve").exists()  # nothing of the run on B
    expected = load_predictor(run_a, device="cpu").predict(TEXTS)
    assert [label for label, _ in got] == [p.label_name for p in expected]
    for (_, probability), p in zip(got, expected, strict=True):
        assert probability == pytest.approx(p.probability, abs=1e-5)

    shutil.rmtree(cache_dir(b))  # wiped: the next ask fetches again, same answers
    assert answers(PredictionService(b), "sent@1") == got
    assert (entry / "artifacts" / "adapter").is_dir()
    service.close()


def test_b_resumes_a_run_whose_machine_died_in_the_same_mlflow_run(
    tmp_path: Path, tiny_bert: Path, stack: SharedStack
) -> None:
    a, b = machine(tmp_path, "a", stack), machine(tmp_path, "b", stack)
    run_id = "20260101-000000-bbbbbb"
    config = tiny_config(tmp_path, tiny_bert, "shared-resume", max_steps=12)
    died = train_on_a(a, config, run_id=run_id, model="resumed", die_at=5)
    assert died.returncode == -9, died.stderr[-3000:]  # killed at step 5: after checkpoint-4
    run_a = find_run(a.storage.results_dir, run_id)
    assert read_state(run_a)["status"] == "running"
    client = MlflowClient(stack.tracking_uri)
    [tracked] = client.search_runs(
        [client.get_experiment_by_name("shared-resume").experiment_id],  # type: ignore[union-attr]
        filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
    )
    assert tracked.info.status == "RUNNING"
    assert CheckpointMirror(client, MARKER).complete(tracked.info.run_id)[-1] == "checkpoint-4"

    result = experiments.resume(b, run_id, [], user="bob", model_name="resumed")
    assert result.status == "succeeded"
    assert result.tracker_run_id == tracked.info.run_id  # the same MLflow run, finished by B
    run_b = find_run(b.storage.results_dir, run_id)
    assert run_b.root.is_relative_to(b.storage.results_dir)
    assert [p.name for p, _ in read_checkpoints(run_b.checkpoints)][-1] == "checkpoint-12"
    assert read_state(run_b)["registered_model"] == "resumed@1"
    finished = client.get_run(tracked.info.run_id)
    assert finished.info.status == "FINISHED"
    assert "final_accuracy" in finished.data.metrics
    steps = [m.step for m in client.get_metric_history(tracked.info.run_id, "train_loss")]
    assert min(steps) == 1 and max(steps) == 12  # A's steps, then B's from the checkpoint on
    trainer_state = json.loads(
        (run_b.checkpoints / "checkpoint-12" / "trainer_state.json").read_text()
    )
    best = trainer_state.get("best_model_checkpoint")
    assert best is None or Path(best).is_relative_to(run_b.checkpoints)
    assert RunPaths(run_b.root).adapter.is_dir()


# Machine A's worker: one delivery of the job, in a process of its own that dies (SIGKILL)
# right after its first checkpoint copy reached the store.
WORKER_A = """
import os, signal, sys
from loralab.infra.db import Database
from loralab.infra.tracking import MlflowTracker
from loralab.jobs.execution import execute_job
from loralab.settings import load_settings

upload = MlflowTracker.save_checkpoint

def upload_then_die(self, checkpoint, run_files):
    upload(self, checkpoint, run_files)
    os.kill(os.getpid(), signal.SIGKILL)

MlflowTracker.save_checkpoint = upload_then_die
settings = load_settings()
execute_job(Database(settings.db_url), settings, sys.argv[1], "machine-a")
"""


def test_a_job_whose_worker_died_on_a_resumes_on_b_in_the_same_mlflow_run(
    tmp_path: Path, tiny_bert: Path, stack: SharedStack
) -> None:
    from tests.conftest import make_rows, write_csv
    from tests.integration.services import RedisServer, private_pg_database, settings_env

    from loralab.audit.log import AuditLog
    from loralab.datasets.service import DataSpec, register_dataset
    from loralab.entrypoints.worker.app import create_celery
    from loralab.identity import Actor, RequestContext
    from loralab.infra.db import Database, Job, User
    from loralab.infra.queue import CeleryJobQueue
    from loralab.jobs.execution import execute_job
    from loralab.jobs.requests import TrainRequest
    from loralab.jobs.service import JobService

    redis = RedisServer(tmp_path / "redis")
    redis.start()
    with private_pg_database() as url:
        shared = {
            "db": {"url": url},
            "queue": {
                "broker_url": redis.url,
                "heartbeat_seconds": 0.5,
                "stale_after_seconds": 2,
                "refuse_unserved": False,
            },
            # the dataset store is shared as a folder: fetching datasets is not built yet
            "datasets": {"store_dir": tmp_path / "dataset-store"},
        }
        a, b = (
            Settings.model_validate(
                {
                    **machine(tmp_path, name, stack).model_dump(),
                    **shared,
                    "storage": {
                        "results_dir": tmp_path / name / "results",
                        "models_dir": tiny_bert.parent,
                    },
                }
            )
            for name in ("a", "b")
        )
        db = Database(url)
        try:
            with db.session() as session:
                user = User(username="alice", password_hash="x", role="user")
                session.add(user)
                session.flush()
                alice = Actor(user.id, "alice", "user")
            data = write_csv(tmp_path / "reviews.csv", make_rows(80))
            register_dataset(
                a, "reviews", data, user="alice", spec=DataSpec(base_model=str(tiny_bert))
            )
            request = TrainRequest(
                train_file="reviews@latest",
                base_model=tiny_bert.name,
                experiment="shared-job",
                model_name="shared-job",
                max_steps=8,
                eval_steps=4,
                batch_size=8,
                validation_split=0.2,
                early_stopping_patience=0,
            )
            jobs = JobService(db, a, CeleryJobQueue(create_celery(a)), AuditLog(db))
            job_id = jobs.submit(alice, request, RequestContext(client="test")).task_id

            args = [sys.executable, "-c", WORKER_A, job_id]
            env = settings_env(
                a,
                LORALAB_MLFLOW__TRACKING_URI=stack.tracking_uri,
                LORALAB_DATASETS__STORE_DIR=str(a.dataset_store_dir),
                LORALAB_QUEUE__HEARTBEAT_SECONDS="0.5",
            )
            cwd = a.storage.results_dir.parent  # python -c imports from its folder: one of A's
            cwd.mkdir(parents=True, exist_ok=True)
            died = subprocess.run(
                args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300
            )
            assert died.returncode == -9, died.stderr[-3000:]
            with db.session() as session:
                row = session.get(Job, job_id)
                assert row is not None and row.state == "training" and row.run_id
                run_id = row.run_id
            assert not (b.storage.results_dir / "shared-job").exists()
            time.sleep(2.5)  # A's lease goes stale
            execute_job(db, b, job_id, "machine-b")

            with db.session() as session:
                done = session.get(Job, job_id)
                assert done is not None
                assert done.state == "succeeded", done.error
                assert done.attempts == 2 and done.run_id == run_id
                mlflow_run_id = done.mlflow_run_id
            client = MlflowClient(stack.tracking_uri)
            experiment = client.get_experiment_by_name("shared-job")
            assert experiment is not None
            tracked = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'"
            )
            assert [r.info.run_id for r in tracked] == [mlflow_run_id]  # one MLflow run
            assert tracked[0].info.status == "FINISHED"
            run_b = find_run(b.storage.results_dir, run_id)
            assert read_state(run_b)["registered_model"] == done.model_version
        finally:
            db.dispose()
            redis.kill()
