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
    tmp: Path, settings: Settings, config: dict[str, Any], *, run_id: str, model: str, die_at: int
) -> subprocess.CompletedProcess[str]:
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
        args, env=env, cwd=tmp, capture_output=True, text=True, timeout=300, check=False
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
    done = train_on_a(tmp_path, a, config, run_id="20260101-000000-aaaaaa", model="sent", die_at=0)
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
    died = train_on_a(tmp_path, a, config, run_id=run_id, model="resumed", die_at=5)
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
