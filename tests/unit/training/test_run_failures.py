"""A bad day during training: the disk fills while a checkpoint is written, the loss turns NaN
mid-run, memory runs out at the first batch. Each fails clearly (or recovers), leaves nothing
half-written, and keeps the run resumable from its last complete checkpoint."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import make_rows, write_csv
from transformers import Trainer

from loralab.observability.reasons import failure_reason
from loralab.training import checkpoints as ckpt
from loralab.training import runs as runs_module
from loralab.training.config import TrainConfig
from loralab.training.errors import DiskFull, OutOfMemory, TrainingFailed
from loralab.training.interfaces import NullLogger
from loralab.training.loop import resume_training, run_training
from loralab.training.prepare import prepare_training
from loralab.training.runs import RunPaths, list_runs, read_state

pytestmark = pytest.mark.slow

STEPS = 32  # 128 train rows / batch 8 = 16 steps per epoch, 2 epochs


class RecordingLogger(NullLogger):
    """A MetricLogger that remembers how each tracker run ended."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        return existing or f"tracker-{run_name}"

    def end_run(self, status: str) -> None:
        self.ended.append(status)


def config_for(model: Path, data: Path, **changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "experiment": "tiny",
        "base_model": str(model),
        "train_file": str(data),
        "validation_split": 0.2,
        "epochs": 2,
        "batch_size": 8,
        "eval_steps": 4,
        "learning_rate": 0.02,
        "lora_dropout": 0.0,
        "early_stopping_patience": 0,
        "logging_steps": 4,
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "train.csv", make_rows(160))


def the_run(results: Path) -> RunPaths:
    (run,) = list_runs(results)
    return run


def steps_on_disk(run: RunPaths) -> list[int]:
    """Every checkpoint folder there is, complete or not."""
    return sorted(
        step for p in run.checkpoints.iterdir() if (step := ckpt.checkpoint_step(p)) is not None
    )


def assert_resumes_to_the_end(run: RunPaths) -> None:
    result = resume_training(run, logger=RecordingLogger())
    assert result.status == "succeeded"
    assert json.loads(run.metrics.read_text())["train"]["steps"] == STEPS
    assert read_state(run)["status"] == "succeeded"


# -- disk full while saving a checkpoint --------------------------------------------------------


def test_disk_full_mid_checkpoint_keeps_the_last_complete_one_and_resumes(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills after checkpoint-8's model files are written (its optimizer state does
    not fit); from then on no file can be written, the run's state file included."""
    disk = {"full": False}
    save_optimizer = Trainer._save_optimizer_and_scheduler
    write_json = runs_module.atomic_write_json

    def optimizer_then_full(self: Trainer, output_dir: str) -> None:
        if self.state.global_step == 8:
            disk["full"] = True
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", output_dir)
        save_optimizer(self, output_dir)

    def state_write(path: Path, payload: Any, **kw: Any) -> None:
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_json(path, payload, **kw)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", optimizer_then_full)
    monkeypatch.setattr(runs_module, "atomic_write_json", state_write)
    logger = RecordingLogger()
    results = tmp_path / "results"

    with pytest.raises(DiskFull, match="disk full at step 8") as caught:
        run_training(config_for(tiny_bert, data), results, logger=logger)

    message = str(caught.value)
    assert "last complete checkpoint (step 4) is kept" in message
    assert failure_reason(caught.value) == "disk_full"
    assert logger.ended == ["FAILED"]  # even though the run's state file could not be written
    run = the_run(results)
    assert steps_on_disk(run) == [4]  # the half-written checkpoint-8 is gone: its space is back
    assert [info.step for _, info in ckpt.read_checkpoints(run.checkpoints)] == [4]
    assert not run.adapter.exists()

    disk["full"] = False  # space is back
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", save_optimizer)
    assert_resumes_to_the_end(run)


def test_disk_full_writing_the_marker_never_counts_the_checkpoint(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file of checkpoint-8 is on disk but its marker does not fit: it is not counted."""
    mark = ckpt.atomic_write_json

    def marker_write(path: Path, payload: Any, **kw: Any) -> None:
        if path.parent.name == "checkpoint-8":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        mark(path, payload, **kw)

    monkeypatch.setattr(ckpt, "atomic_write_json", marker_write)
    results = tmp_path / "results"
    with pytest.raises(DiskFull, match="no space left"):
        run_training(config_for(tiny_bert, data), results, logger=RecordingLogger())

    run = the_run(results)
    assert steps_on_disk(run) == [4]
    assert not list(run.checkpoints.glob("checkpoint-8/.*.tmp"))
    state = read_state(run)
    assert state["status"] == "failed" and "disk full" in state["error"]
    monkeypatch.setattr(ckpt, "atomic_write_json", mark)
    assert_resumes_to_the_end(run)


def test_disk_full_while_saving_the_model_leaves_no_half_adapter(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    save = PeftModel.save_pretrained

    def no_space(self: Any, save_directory: str, **kw: Any) -> Any:
        if "checkpoint-" in save_directory:  # checkpoints fit; the final model does not
            return save(self, save_directory, **kw)
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        (Path(save_directory) / "adapter_model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", save_directory)

    monkeypatch.setattr(PeftModel, "save_pretrained", no_space)
    results = tmp_path / "results"
    with pytest.raises(DiskFull, match=f"step {STEPS}"):
        run_training(config_for(tiny_bert, data), results, logger=RecordingLogger())

    run = the_run(results)
    assert not run.adapter.exists() and not run.model_info.exists()
    assert [p.name for p in run.artifacts.iterdir() if p.name.startswith(".")] == []


# -- a NaN mid-run ------------------------------------------------------------------------------


def test_nan_mid_run_fails_naming_the_step_and_keeps_earlier_checkpoints(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compute_loss = Trainer.compute_loss
    calls = {"train": 0}

    def nan_at_step_6(self: Trainer, model: Any, inputs: Any, *args: Any, **kw: Any) -> Any:
        result: Any = compute_loss(self, model, inputs, *args, **kw)
        if model.training:
            calls["train"] += 1
            if calls["train"] == 6:
                return result * float("nan")  # return_outputs is False in training
        return result

    monkeypatch.setattr(Trainer, "compute_loss", nan_at_step_6)
    logger = RecordingLogger()
    results = tmp_path / "results"
    with pytest.raises(TrainingFailed, match="loss became nan at step 6") as caught:
        run_training(config_for(tiny_bert, data), results, logger=logger)

    assert failure_reason(caught.value) == "nan"
    assert logger.ended == ["FAILED"]
    run = the_run(results)
    state = read_state(run)
    assert state["status"] == "failed" and "at step 6" in state["error"]
    assert [info.step for _, info in ckpt.read_checkpoints(run.checkpoints)] == [4]

    monkeypatch.setattr(Trainer, "compute_loss", compute_loss)
    assert_resumes_to_the_end(run)  # the checkpoint before the NaN is usable


# -- out of memory at the first batch -----------------------------------------------------------


def test_cuda_out_of_memory_at_the_first_batch_shrinks_it_and_finishes(
    tmp_path: Path, tiny_bert: Path, data: Path
) -> None:
    config = config_for(tiny_bert, data, epochs=1, eval_steps=None)
    prepared = prepare_training(config)
    seen: list[int] = []

    def first_batch_too_big(module: object, args: tuple, kwargs: dict) -> None:
        if prepared.model.training:
            seen.append(int(kwargs["input_ids"].shape[0]))
            if len(seen) == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    prepared.model.register_forward_pre_hook(first_batch_too_big, with_kwargs=True)
    result = run_training(config, tmp_path / "results", prepared=prepared)

    assert result.status == "succeeded"
    assert seen[:2] == [8, 7] and max(seen[1:]) == 7  # 10% smaller, then the whole run at 7
    assert json.loads(result.run.metrics.read_text())["train"]["batch_size"] == 7


def test_out_of_memory_at_batch_size_one_fails_clearly(
    tmp_path: Path, tiny_bert: Path, data: Path
) -> None:
    config = config_for(tiny_bert, data, batch_size=2, epochs=1)
    prepared = prepare_training(config)
    seen: list[int] = []

    def never_fits(module: object, args: tuple, kwargs: dict) -> None:
        if prepared.model.training:
            seen.append(int(kwargs["input_ids"].shape[0]))
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")

    prepared.model.register_forward_pre_hook(never_fits, with_kwargs=True)
    logger = RecordingLogger()
    results = tmp_path / "results"
    with pytest.raises(OutOfMemory, match="out of memory at batch size 1") as caught:
        run_training(config, results, prepared=prepared, logger=logger)

    assert seen == [2, 1]  # tried each size once, then stopped: no loop
    assert failure_reason(caught.value) == "oom"
    assert logger.ended == ["FAILED"]
    assert read_state(the_run(results))["status"] == "failed"
