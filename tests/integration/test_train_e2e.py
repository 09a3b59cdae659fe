"""End to end: train a tiny BERT with LoRA, track it in a real MLflow store, reload, predict."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tests.conftest import build_tiny_bert, make_rows, write_csv

from loralab.errors import InvalidInput
from loralab.experiments import service
from loralab.infra.tracking import tracking_uri
from loralab.settings import Settings, StorageSettings
from loralab.training import TrainConfig, TrainingFailed
from loralab.training.checkpoints import MARKER, read_checkpoints
from loralab.training.runs import RunPaths, read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def settings_for(tmp_path: Path) -> Settings:
    return Settings(storage=StorageSettings(results_dir=tmp_path / "results"))


def config_for(model: Path, data: Path, **changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "experiment": "tiny",
        "base_model": str(model),
        "train_file": str(data),
        "validation_split": 0.2,
        "epochs": 8,
        "batch_size": 8,
        "learning_rate": 0.02,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "early_stopping_patience": 0,
        "logging_steps": 5,
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


def mlflow_runs(settings: Settings, experiment: str = "tiny") -> list:
    client = MlflowClient(tracking_uri(settings))
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_train_track_reload_predict(tmp_path: Path, tiny_bert: Path, sentiment_csv: Path) -> None:
    settings = settings_for(tmp_path)
    result = service.train(settings, config_for(tiny_bert, sentiment_csv))

    run = result.run
    assert result.status == "succeeded"
    assert run.root.parent == settings.storage.results_dir / "tiny"
    for path in (
        run.config,
        run.metrics,
        run.logs,
        run.label_map,
        run.model_info,
        run.adapter / "adapter_model.safetensors",
        run.tokenizer / "tokenizer.json",
        run.confusion_matrix_png,
    ):
        assert path.is_file(), path
    assert not list(run.adapter.glob("*.bin"))
    metrics = json.loads(run.metrics.read_text())
    assert metrics["report"]["labels"] == ["negative", "positive"]
    assert metrics["final"]["accuracy"] >= 0.8, metrics["history"]
    assert len(metrics["history"]) == 8  # one evaluation per epoch
    assert sum(map(sum, metrics["report"]["confusion_matrix"])) == 32
    kept = {info.step for _, info in read_checkpoints(run.checkpoints)}
    assert kept == {
        s
        for s in (result.retention.best, result.retention.last, result.retention.fastest)
        if s is not None
    }
    assert "run " + run.run_id in run.logs.read_text()

    runs = mlflow_runs(settings)
    assert len(runs) == 1
    mlrun = runs[0]
    assert mlrun.info.run_id == result.tracker_run_id
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["lora_r"] == "8"
    assert mlrun.data.tags["dataset_fingerprint"] == read_state(run)["dataset_fingerprint"]
    assert mlrun.data.tags["language"] == "English"
    assert {"loralab_version", "device", "base_model"} <= set(mlrun.data.tags)
    assert mlrun.data.metrics["final_accuracy"] == pytest.approx(metrics["final"]["accuracy"])
    client = MlflowClient(tracking_uri(settings))
    steps = [m.step for m in client.get_metric_history(mlrun.info.run_id, "train_loss")]
    assert steps == sorted(steps) and len(steps) == metrics["train"]["steps"]  # every step
    assert len(client.get_metric_history(mlrun.info.run_id, "learning_rate")) == len(steps)
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {
        "config.yaml",
        "metrics.json",
        "confusion_matrix.png",
        "logs.txt",
        "adapter",
    } <= artifacts

    texts = ["the movie was good good very it", "the phone was awful awful quite it"]
    predictions = service.predict(settings, run.run_id, texts)
    assert [p.label_name for p in predictions] == ["positive", "negative"]
    assert all(0.5 < p.probability <= 1.0 for p in predictions)
    # The reloaded model agrees with the trained one on the whole validation report.
    fresh = make_rows(160)  # same rows the model trained and validated on
    reloaded = service.predict(settings, run.run_id, [t for t, _ in fresh])
    agree = sum(p.label_name == label for p, (_, label) in zip(reloaded, fresh)) / len(fresh)
    assert agree >= 0.8

    summaries = service.list_run_summaries(settings)
    assert [(s.run_id, s.status) for s in summaries] == [(run.run_id, "succeeded")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_file": "missing.csv"}, "not found"),
        ({"label_column": "sentiment"}, "sentiment"),
        ({"base_model": "no-such-model-anywhere/xyz/abc"}, "no-such-model"),
        ({"device": "cuda"}, "CUDA"),
        ({"labels": ["positive", "neutral"]}, "unknown label 'negative'"),
    ],
)
def test_bad_input_leaves_nothing_behind(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path, changes: dict, message: str
) -> None:
    import torch

    if changes.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    settings = settings_for(tmp_path)
    config = config_for(tiny_bert, sentiment_csv, **changes)
    with pytest.raises(InvalidInput, match=message):
        service.train(settings, config)
    experiment_dir = settings.storage.results_dir / "tiny"
    assert not experiment_dir.exists() or not any(experiment_dir.iterdir())
    assert mlflow_runs(settings) == []


class StopAfter:
    """A stop signal that fires after a number of steps, like Ctrl-C in the CLI."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def is_set(self) -> bool:
        self.left -= 1
        return self.left <= 0


def test_stop_then_resume_continues_same_run(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    settings = settings_for(tmp_path)
    config = config_for(tiny_bert, sentiment_csv, epochs=3, eval_steps=4)
    first = service.train(settings, config, stop=StopAfter(6))
    assert first.status == "stopped"
    assert first.retention.last == 6  # saved where it stopped

    run = first.run
    # A crash mid-save leaves a checkpoint folder without its marker: resume must ignore it.
    half = run.checkpoints / "checkpoint-99"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"partial")

    second = service.resume(settings, run.run_id, [])
    assert second.status == "succeeded"
    assert second.run.root == run.root
    assert not half.exists()
    assert second.tracker_run_id == first.tracker_run_id
    runs = mlflow_runs(settings)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    total_steps = 3 * 16  # 128 train rows / batch 8 = 16 steps per epoch
    assert json.loads(run.metrics.read_text())["train"]["steps"] == total_steps
    assert all((path / MARKER).is_file() for path, _ in read_checkpoints(run.checkpoints))
    # Stopped runs are not registered; the run that finished on resume is, with its lineage.
    state = read_state(run)
    assert state["registered_model"] == "tiny@1"
    assert state["dataset"]["fingerprint"] == state["dataset_fingerprint"]


def test_resume_refuses_settings_that_would_make_the_checkpoint_lie(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    settings = settings_for(tmp_path)
    first = service.train(settings, config_for(tiny_bert, sentiment_csv, epochs=1))
    with pytest.raises(InvalidInput, match="lora_r: cannot change when resuming"):
        service.resume(settings, first.run.run_id, ["lora_r=16"])


def test_non_finite_loss_fails_clearly(tmp_path: Path, sentiment_csv: Path) -> None:
    broken = build_tiny_bert(tmp_path / "nan-bert", nan_weights=True)
    settings = settings_for(tmp_path)
    with pytest.raises(TrainingFailed, match="loss became nan"):
        service.train(settings, config_for(broken, sentiment_csv))
    runs = mlflow_runs(settings)
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    (run_dir,) = (settings.storage.results_dir / "tiny").iterdir()
    state = read_state(RunPaths(run_dir))
    assert state["status"] == "failed" and "diverged" in state["error"]


def test_stop_signal_is_a_threading_event(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    event = threading.Event()
    event.set()
    result = service.train(settings_for(tmp_path), config_for(tiny_bert, sentiment_csv), stop=event)
    assert result.status == "stopped" and result.retention.last == 1


def test_three_classes_with_integer_labels(tmp_path: Path, tiny_bert: Path) -> None:
    rows = [(t, {"positive": "2", "negative": "0"}[lab]) for t, lab in make_rows(60)]
    rows += [(f"the phone it was quite {i}", "10") for i in range(30)]
    data = write_csv(tmp_path / "three.csv", rows)
    result = service.train(settings_for(tmp_path), config_for(tiny_bert, data, epochs=2))
    assert result.report["labels"] == ["0", "2", "10"]
    assert len(result.report["confusion_matrix"]) == 3


def test_out_of_memory_shrinks_the_batch(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    """A batch too big for memory shrinks and training starts again, instead of failing."""
    from loralab.training import prepare_training, run_training

    config = config_for(tiny_bert, sentiment_csv, batch_size=16, epochs=1)
    prepared = prepare_training(config)
    seen: list[int] = []

    def refuse_big_batches(module: object, args: tuple, kwargs: dict) -> None:
        size = int(kwargs["input_ids"].shape[0])
        if prepared.model.training:
            seen.append(size)
            if size > 4:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")

    prepared.model.register_forward_pre_hook(refuse_big_batches, with_kwargs=True)
    result = run_training(config, tmp_path / "results", prepared=prepared)
    assert result.status == "succeeded"
    first_fit = seen.index(4)
    tried = seen[:first_fit]
    assert tried[0] == 16 and tried == sorted(tried, reverse=True)  # shrinks on every failure
    assert set(seen[first_fit:]) == {4}
    metrics = json.loads(result.run.metrics.read_text())
    assert metrics["train"]["batch_size"] == 4
    assert (
        "out of memory at batch size 16: training with batch size 4" in result.run.logs.read_text()
    )


def test_unreachable_tracking_server_fails_fast_and_leaves_no_run(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    import time

    from loralab.infra.tracking import TrackingUnavailable
    from loralab.settings import MlflowSettings

    settings = Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        mlflow=MlflowSettings(tracking_uri="http://127.0.0.1:9"),  # nothing listens there
    )
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="not reachable"):
        service.train(settings, config_for(tiny_bert, sentiment_csv))
    assert time.monotonic() - started < 60
    experiment_dir = settings.storage.results_dir / "tiny"
    assert not experiment_dir.exists() or not any(experiment_dir.iterdir())
