"""The trial's logger reports each evaluation to Optuna and raises the stop flag when the
pruner says so; the report turns trials into rows, a plot and a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from loralab.sweeps.report import best_row, plot_metric, rows_of, write_recipe
from loralab.sweeps.trials import PARENT_TAG, TrialLogger
from loralab.training.config import TrainConfig, load_config
from loralab.training.interfaces import AnyStop, NeverStop


class RecordingTracker:
    """A hand-written MlflowTracker stand-in: what the trial sent where."""

    def __init__(self) -> None:
        self.client = self  # MlflowTracker.client: tags on ended runs
        self.run_tags: dict[tuple[str, str], str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[dict[str, float], int]] = []
        self.ended: str | None = None

    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        return "child-run"

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.run_tags[(run_id, key)] = value

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.append((metrics, step))

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def end_run(self, status: str) -> None:
        self.ended = status


def a_study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )


def run_curve(study: optuna.Study, curve: list[float]) -> TrialLogger:
    """What the training loop does: evaluations at steps 10, 20, ... until the stop flag."""
    trial = study.ask()
    tracker = RecordingTracker()
    logger = TrialLogger(tracker, trial, "accuracy", "parent-run", "s1")  # type: ignore[arg-type]
    logger.start_run("exp", "run", None)
    for i, value in enumerate(curve, start=1):
        logger.log_metrics({"train_loss": 0.5}, i * 10)  # not an evaluation: not reported
        logger.log_metrics({"val_loss": 0.3, "val_accuracy": value}, i * 10)
        if logger.is_set():
            break
    state = optuna.trial.TrialState.PRUNED if logger.pruned else optuna.trial.TrialState.COMPLETE
    study.tell(trial, None if logger.pruned else curve[-1], state=state)
    return logger


def test_a_trial_behind_the_median_is_pruned_at_its_evaluation() -> None:
    study = a_study()
    first = run_curve(study, [0.7, 0.8, 0.9])
    assert not first.pruned and first.reported == [(10, 0.7), (20, 0.8), (30, 0.9)]
    assert first.tracker.tags[PARENT_TAG] == "parent-run"  # a child run of the sweep's
    assert first.tracker.tags["loralab.sweep.trial"] == "0"
    behind = run_curve(study, [0.75, 0.6, 0.95])
    assert behind.pruned and behind.reported == [(10, 0.75), (20, 0.6)]  # stopped at step 20
    ahead = run_curve(study, [0.8, 0.85, 0.92])
    assert not ahead.pruned
    behind.mark("child-run", "PRUNED")
    assert behind.tracker.run_tags == {("child-run", "loralab.sweep.trial_state"): "PRUNED"}  # type: ignore[attr-defined]
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    # every metric still reaches MLflow, evaluations and steps alike
    assert ({"train_loss": 0.5}, 10) in behind.tracker.metrics  # type: ignore[attr-defined]


def test_either_stop_is_set_when_any_signal_is() -> None:
    class Flag:
        value = False

        def is_set(self) -> bool:
            return self.value

    flag = Flag()
    stop = AnyStop(NeverStop(), flag)
    assert not stop.is_set()
    flag.value = True
    assert stop.is_set()


def test_rows_best_plot_and_recipe(tmp_path: Path) -> None:
    study = a_study()
    for curve in ([0.6, 0.7], [0.5, 0.4], [0.8, 0.85], [0.7, 0.8]):
        run_curve(study, curve)
    rows = rows_of(study.trials)
    assert [r.state for r in rows] == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"]
    assert rows[1].value == 0.5 and rows[1].last_step == 10  # where the pruned one stopped
    best = best_row(rows)
    assert best is not None and best.number == 2 and best.value == 0.85
    png = plot_metric(rows, "accuracy", "sweep s1", tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    config = TrainConfig(lora_r=4, lora_target_modules=("query", "key"), learning_rate=0.003)
    recipe = write_recipe(config, tmp_path / "best.yaml", "Best of sweep s1\nRun: loralab train")
    assert recipe.read_text(encoding="utf-8").startswith("# Best of sweep s1\n# Run:")
    assert load_config(recipe) == config  # loralab train reads it back as the same settings


def test_no_completed_trial_means_no_best() -> None:
    study = a_study()
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert best_row(rows_of(study.trials)) is None


@pytest.mark.parametrize("kind", ["median", "successive_halving", "none"])
def test_each_pruner_kind_builds(kind: str) -> None:
    from loralab.sweeps.spec import PrunerSpec

    assert isinstance(PrunerSpec(kind=kind).build(), optuna.pruners.BasePruner)  # type: ignore[arg-type]


def test_trials_that_search_only_training_settings_share_one_data_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loralab.datasets import service as datasets
    from loralab.settings import Settings
    from loralab.sweeps import trials

    calls: list[TrainConfig] = []

    def resolve(settings: Settings, config: TrainConfig) -> Any:
        calls.append(config)
        resolved = config.model_copy(update={"train_file": "/store/objects/abc.jsonl"})
        return datasets.TrainingData(resolved, None)  # type: ignore[arg-type]

    monkeypatch.setattr(datasets, "resolve_training_data", resolve)
    cache: trials.DataCache = {}
    base = TrainConfig(train_file="reviews@v1")
    for lr in (0.001, 0.002):
        _, config = trials._resolve_data(
            Settings(), base.model_copy(update={"learning_rate": lr}), None, cache
        )
        assert config.train_file == "/store/objects/abc.jsonl" and config.learning_rate == lr
    assert len(calls) == 1
    trials._resolve_data(Settings(), base.model_copy(update={"max_length": 64}), None, cache)
    assert len(calls) == 2  # a setting the data check reads: checked again


def test_an_interrupted_trial_shows_as_such_and_leaves_its_place_in_the_budget() -> None:
    from loralab.sweeps.local import INTERRUPTED, counted

    study = a_study()
    run_curve(study, [0.6, 0.7])
    trial = study.ask()
    trial.set_user_attr(INTERRUPTED, True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    assert [r.state for r in rows_of(study.trials)] == ["COMPLETE", "INTERRUPTED", "FAIL"]
    assert counted(study.trials) == 2  # a failed trial counts; an interrupted one runs again


def test_a_trial_told_elsewhere_stops_listening_and_training_goes_on() -> None:
    """A trial's job keeps training when the study no longer takes its reports (a reader told
    the trial FAIL, say): the logger warns once and passes metrics on to MLflow as before."""
    study = a_study()
    trial = study.ask()
    tracker = RecordingTracker()
    logger = TrialLogger(tracker, trial, "accuracy", None, "s")  # type: ignore[arg-type]
    logger.log_metrics({"val_accuracy": 0.6}, 10)
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    logger.log_metrics({"val_accuracy": 0.7}, 20)
    logger.log_metrics({"val_accuracy": 0.8}, 30)
    assert logger.reported == [(10, 0.6)] and not logger.is_set()
    assert [step for _, step in tracker.metrics] == [10, 20, 30]


def test_a_watched_job_is_pruned_with_a_reason_that_names_the_step() -> None:
    from loralab.sweeps.trials import TrialWatch

    study = a_study()
    ahead = study.ask()
    for step in (10, 20):
        ahead.report(0.9, step)
    study.tell(ahead, 0.9)
    watch = TrialWatch(study.ask(), "accuracy", "sweep-1")
    assert watch.reason() is None and not watch.is_set()
    logger = watch.observe(RecordingTracker())  # type: ignore[arg-type]
    logger.log_metrics({"val_accuracy": 0.5}, 10)
    assert watch.is_set()
    assert watch.reason() is not None and "accuracy 0.5000 at step 10" in (watch.reason() or "")
    assert study.trials[1].user_attrs["pruned_at"] == 10
