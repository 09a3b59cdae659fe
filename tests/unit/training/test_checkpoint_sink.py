"""A logger that keeps checkpoint copies elsewhere (``CheckpointSink``) hears of each complete
checkpoint, after its marker, with the run's config and state, and of every checkpoint that
retention deleted; a logger without those methods trains as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_rows, write_csv

from loralab.training import checkpoints as ckpt
from loralab.training.config import TrainConfig
from loralab.training.interfaces import CheckpointSink, NullLogger
from loralab.training.loop import run_training

pytestmark = pytest.mark.slow


class SinkLogger(NullLogger):
    """Records what a CheckpointSink is told, and what was on disk at that moment."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, bool, list[str]]] = []
        self.dropped: list[str] = []

    def save_checkpoint(self, checkpoint: Path, run_files: list[Path]) -> None:
        complete = (checkpoint / ckpt.MARKER).is_file()
        self.saved.append((checkpoint.name, complete, [p.name for p in run_files if p.is_file()]))

    def drop_checkpoints(self, checkpoints: list[Path]) -> None:
        assert not any(p.exists() for p in checkpoints), "told before the deletion on disk"
        self.dropped += [p.name for p in checkpoints]


class PlainLogger:
    """A MetricLogger without the optional CheckpointSink methods."""

    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        return "plain"

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def end_run(self, status: str) -> None:
        pass


def tiny(model: Path, data: Path) -> TrainConfig:
    return TrainConfig(
        experiment="sink",
        base_model=str(model),
        train_file=str(data),
        validation_split=0.2,
        max_steps=8,
        eval_steps=2,
        logging_steps=2,
        batch_size=8,
        max_length=16,
        lora_dropout=0.0,
        learning_rate=0.02,
        early_stopping_patience=0,
    )


def test_each_complete_checkpoint_and_each_deletion_reach_the_sink(
    tmp_path: Path, tiny_bert: Path
) -> None:
    data = write_csv(tmp_path / "train.csv", make_rows(80))
    logger = SinkLogger()
    assert isinstance(logger, CheckpointSink)
    result = run_training(tiny(tiny_bert, data), tmp_path / "results", logger=logger)
    assert [name for name, _, _ in logger.saved] == [f"checkpoint-{s}" for s in (2, 4, 6, 8)]
    assert all(complete for _, complete, _ in logger.saved)
    assert all(files == ["config.yaml", "run.json"] for _, _, files in logger.saved)
    kept = {p.name for p, _ in ckpt.read_checkpoints(result.run.checkpoints)}
    assert set(logger.dropped) == {name for name, _, _ in logger.saved} - kept
    assert logger.dropped  # four saved, at most three kept: retention deleted one at least


def test_a_logger_without_the_sink_methods_trains_as_before(
    tmp_path: Path, tiny_bert: Path
) -> None:
    data = write_csv(tmp_path / "train.csv", make_rows(80))
    assert not isinstance(PlainLogger(), CheckpointSink)
    result = run_training(tiny(tiny_bert, data), tmp_path / "results", logger=PlainLogger())
    assert result.status == "succeeded"
    assert ckpt.read_checkpoints(result.run.checkpoints)
