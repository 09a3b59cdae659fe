"""Retention and the folders serving reads. Serving loads a run's ``artifacts/adapter`` (a
registered model too), never a checkpoint: retention deletes only unprotected checkpoint
folders, and the adapter is swapped in whole, so a reader never meets half of one."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from loralab.training.checkpoints import (
    PROTECT_FILE,
    apply_retention,
    mark_complete,
    read_checkpoints,
)
from loralab.training.loop import _publish_folder
from loralab.training.runs import RunPaths


def saved_run(tmp_path: Path) -> RunPaths:
    run = RunPaths(tmp_path / "exp" / "run")
    for folder in (run.adapter, run.tokenizer):
        folder.mkdir(parents=True)
        (folder / "weights").write_text("old")
    run.model_info.write_text("{}")
    return run


def checkpoint(run: RunPaths, step: int, metric: float) -> Path:
    folder = run.checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_text(str(step))
    mark_complete(folder, step, metric)
    return folder


def test_retention_keeps_protected_checkpoints_and_never_touches_the_served_model(
    tmp_path: Path,
) -> None:
    run = saved_run(tmp_path)
    protected = checkpoint(run, 10, 0.50)  # neither best, last nor fastest
    (protected / PROTECT_FILE).touch()
    for step, metric in ((20, 0.90), (30, 0.60), (40, 0.70), (50, 0.65)):
        checkpoint(run, step, metric)
        apply_retention(run.checkpoints, higher_is_better=True, tolerance=0.0)

    assert [info.step for _, info in read_checkpoints(run.checkpoints)] == [10, 20, 50]
    assert (protected / "adapter_model.safetensors").read_text() == "10"
    assert (run.adapter / "weights").read_text() == "old"
    assert (run.tokenizer / "weights").read_text() == "old"
    assert run.model_info.is_file()


def test_a_new_adapter_replaces_the_old_one_whole(tmp_path: Path) -> None:
    run = saved_run(tmp_path)

    def write(folder: Path) -> None:
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_text("new")

    _publish_folder(run.adapter, write)

    assert sorted(p.name for p in run.adapter.iterdir()) == ["adapter_model.safetensors"]
    assert sorted(p.name for p in run.artifacts.iterdir() if p.name.startswith(".")) == []


def test_a_failed_adapter_write_keeps_the_served_one_intact(tmp_path: Path) -> None:
    run = saved_run(tmp_path)

    def half_then_full(folder: Path) -> None:
        folder.mkdir()
        (folder / "weights").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        _publish_folder(run.adapter, half_then_full)

    assert (run.adapter / "weights").read_text() == "old"
    assert sorted(p.name for p in run.artifacts.iterdir() if p.name.startswith(".")) == []
