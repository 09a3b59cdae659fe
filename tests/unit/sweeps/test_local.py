"""How a local sweep counts a trial: the pruner's verdict only matters if it stopped the run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loralab.settings import DbSettings, MlflowSettings, Settings, StorageSettings
from loralab.sweeps import local
from loralab.sweeps.spec import load_spec
from loralab.sweeps.trials import TrialRun

TINY = Path(__file__).with_name("sweep-tiny.yaml")
ROOT = Path(__file__).resolve().parents[3]


def test_a_trial_flagged_at_its_last_evaluation_is_complete_and_a_stopped_one_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pruner may flag a trial at the evaluation after its last step: that run ended
    anyway ("succeeded") and its value counts; a run the flag stopped is PRUNED."""
    outcomes = iter([("succeeded", 0.7), ("stopped", 0.6), ("succeeded", 0.8)])

    def fake_train(settings: Any, config: Any, logger: Any, *_: Any) -> Any:
        status, value = next(outcomes)
        tracked = logger.start_run(config.experiment, "trial", None)  # a real child run
        logger.end_run("FINISHED")
        logger.pruned = True  # the pruner said so at the last evaluation it saw
        logger.reported.append((4, value))
        run = SimpleNamespace(run_id=f"run-{value}")
        result = SimpleNamespace(run=run, tracker_run_id=tracked, status=status)
        return TrialRun(result, True, value)  # type: ignore[arg-type]

    monkeypatch.setattr(local, "train_trial", fake_train)
    settings = Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        db=DbSettings(url=f"sqlite:///{tmp_path / 'loralab.db'}"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
    )
    outcome = local.run_sweep(settings, load_spec(TINY), root=ROOT)
    assert [(r.state, r.value) for r in outcome.rows] == [
        ("COMPLETE", 0.7),
        ("PRUNED", None),
        ("COMPLETE", 0.8),
    ]
    assert outcome.best is not None and outcome.best.value == 0.8
