"""A real worker killed with SIGKILL before its first checkpoint: the retry trains the job's one
run again (one folder, the same run id) and no MLflow run stays RUNNING; a real worker announces
its queues in Redis while it lives and stops counting once killed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tests.integration.services import wait_for
from tests.integration.test_worker import CTX, Stack, build_stack, checkpoint_of, close_stack

from loralab.infra.tracking import tracking_uri
from loralab.jobs.requests import TrainRequest
from loralab.jobs.workers import RedisWorkers
from loralab.training.runs import RunPaths, read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Stack]:
    built = build_stack(tmp_path_factory.mktemp("runs"), tiny_bert)
    yield built
    close_stack(built)


def test_a_worker_killed_before_its_first_checkpoint_leaves_one_run_and_no_running_mlflow(
    stack: Stack,
) -> None:
    request = TrainRequest(
        train_file="reviews@latest",
        base_model="tiny-bert",
        experiment="early",
        model_name="early",
        max_steps=60,
        eval_steps=60,  # the only checkpoint comes at the very end
        batch_size=8,
        validation_split=0.2,
        early_stopping_patience=0,
    )
    job_id = stack.jobs().submit(stack.alice, request, CTX).task_id
    first = stack.start_worker()

    def training_with_a_tracker_run() -> str | None:
        row = stack.row(job_id)
        if row.state != "training" or not row.run_id:
            return None
        folder = stack.settings.storage.results_dir / "early" / row.run_id
        return str(read_state(RunPaths(folder)).get("tracker_run_id") or "") or None

    orphan = wait_for(training_with_a_tracker_run, 120, "training to start")
    stack.kill_worker(first)
    before = stack.row(job_id)
    assert checkpoint_of(stack, job_id) is None, "too late: the test needs a kill before it"
    stack.start_worker()
    done = stack.wait_state(job_id, {"succeeded", "failed", "cancelled"}, 150)
    assert done.state == "succeeded", (done.error, stack.logs())
    assert done.run_id == before.run_id and done.attempts == 2
    folders = sorted(p.name for p in (stack.settings.storage.results_dir / "early").iterdir())
    assert folders == [done.run_id]
    client = MlflowClient(tracking_uri(stack.settings))
    experiment = client.get_experiment_by_name("early")
    assert experiment is not None
    statuses = {
        r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert statuses[orphan] == "KILLED" and statuses[str(done.mlflow_run_id)] == "FINISHED"
    assert "RUNNING" not in statuses.values(), statuses


def test_a_live_worker_announces_its_queue_and_a_killed_one_stops_counting(
    stack: Stack,
) -> None:
    workers = RedisWorkers(stack.redis.url, ttl_seconds=2)
    earlier = set(workers.live())
    worker = stack.start_worker(worker_ttl_seconds="2")

    def announced() -> str | None:
        new = [n for n, queues in workers.live().items() if n not in earlier and "cpu" in queues]
        return new[0] if new else None

    name = wait_for(announced, 90, "the worker to announce the cpu queue")
    assert workers.live()[name] == ["cpu"] and workers.serves("cuda") is False
    stack.kill_worker(worker)
    wait_for(lambda: name not in workers.live(), 10, "the heartbeat to expire")
