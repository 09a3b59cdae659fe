"""One trial of a local sweep: train a config as a child MLflow run, pruned at evaluations.

Training reaches the outside only through the library's small interfaces, so the trial plugs
in there and changes nothing in the loop:

* :class:`TrialLogger` is the run's :class:`~loralab.training.interfaces.MetricLogger`. It
  passes everything on to MLflow (the run is tagged ``mlflow.parentRunId``: a child of the
  sweep's run) and reports each evaluation's ``val_<metric>`` to the Optuna trial at its
  training step; when the pruner says the trial is behind, it raises its stop flag.
* :class:`~loralab.training.interfaces.AnyStop` is the run's stop signal: the pruner's flag
  or the user's Ctrl-C. The loop then ends the run gracefully (evaluated, saved, status
  ``stopped``), so a pruned trial's run is complete and inspectable.
* :class:`TrialWatch` does the same for a trial that runs as a job on the queue (``POST
  /sweeps``): the worker passes the job's tracker through it (:mod:`loralab.jobs.watch`).

A trial is not registered as a model version: the sweep writes the best settings as a recipe;
``loralab train`` on it makes the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from loralab.datasets import service as datasets
from loralab.errors import InvalidInput
from loralab.experiments.service import INPUT_ERRORS, base_model_source
from loralab.infra.tracking import MlflowTracker
from loralab.settings import Settings
from loralab.training import TrainConfig, TrainResult, prepare_training, run_training
from loralab.training.interfaces import AnyStop, MetricLogger, ProgressReporter, StopSignal

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("loralab.sweeps")
PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests runs (its UI and search read this tag)
SWEEP_TAG = "loralab.sweep"
TRIAL_TAG = "loralab.sweep.trial"
STATE_TAG = "loralab.sweep.trial_state"


class TrialLogger:
    """MetricLogger: MLflow child run of the sweep, and each evaluation reported to the trial."""

    def __init__(
        self,
        tracker: MlflowTracker,
        trial: optuna.Trial,
        metric: str,
        parent_run_id: str | None,
        sweep: str,
    ) -> None:
        self.tracker, self.trial, self.metric = tracker, trial, metric
        self.parent_run_id, self.sweep = parent_run_id, sweep
        self.pruned = False
        self.reported: list[tuple[int, float]] = []
        self._deaf = False  # the study stopped listening (the trial was told elsewhere)

    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        run_id = self.tracker.start_run(experiment, run_name, existing)
        tags = {SWEEP_TAG: self.sweep, TRIAL_TAG: str(self.trial.number)}
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        self.tracker.set_tags(tags)
        return run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.tracker.log_params(params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tracker.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.tracker.log_metrics(metrics, step)
        value = metrics.get(f"val_{self.metric}")
        if value is None or self.pruned or self._deaf:
            return
        try:
            self.trial.report(float(value), step)
            self.reported.append((step, float(value)))
            if self.trial.should_prune():
                self.trial.set_user_attr("pruned_at", step)
                self.pruned = True
                log.info(
                    "trial %d pruned at step %d (%s %.4f)",
                    self.trial.number,
                    step,
                    self.metric,
                    value,
                )
        except (RuntimeError, ValueError) as err:  # e.g. told already: training goes on
            self._deaf = True
            log.warning("trial %d: cannot report to the study: %s", self.trial.number, err)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.tracker.log_artifact(path, folder)

    def end_run(self, status: str) -> None:
        self.tracker.end_run(status)

    def save_checkpoint(self, checkpoint: Path, run_files: list[Path]) -> None:
        """Checkpoints are mirrored as for any run (another machine may resume a trial)."""
        self.tracker.save_checkpoint(checkpoint, run_files)

    def drop_checkpoints(self, checkpoints: list[Path]) -> None:
        self.tracker.drop_checkpoints(checkpoints)

    def is_set(self) -> bool:
        """The stop flag: the pruner has spoken."""
        return self.pruned

    def mark(self, run_id: str, state: str) -> None:
        """Tag the ended child run with how its trial ended (COMPLETE, PRUNED, ...)."""
        self.tracker.client.set_tag(run_id, STATE_TAG, state)


class TrialWatch:
    """:class:`~loralab.jobs.watch.RunWatch` of a sweep trial that runs as a job: the job's
    tracker becomes a :class:`TrialLogger` (no parent run), so each evaluation is reported to
    the trial and the sweep's pruner may stop the run."""

    def __init__(self, trial: optuna.Trial, metric: str, sweep: str) -> None:
        self.trial, self.metric, self.sweep = trial, metric, sweep
        self.logger: TrialLogger | None = None

    def observe(self, tracker: MetricLogger) -> MetricLogger:
        # a job's tracker is the MlflowTracker of experiments.train
        self.logger = TrialLogger(
            cast(MlflowTracker, tracker), self.trial, self.metric, None, self.sweep
        )
        return self.logger

    def is_set(self) -> bool:
        return self.logger is not None and self.logger.pruned

    def reason(self) -> str | None:
        if self.logger is None or not self.logger.pruned:
            return None
        step, value = self.logger.reported[-1]
        return (
            f"pruned by sweep {self.sweep}: {self.metric} {value:.4f} at step {step} was behind "
            "the other trials at that step; the run keeps its last checkpoint"
        )


@dataclass(frozen=True)
class TrialRun:
    """What one trial's training produced."""

    result: TrainResult
    pruned: bool
    value: float


# What resolving and validating the data reads of a config (datasets.resolve_training_data)
DATA_FIELDS = (
    "train_file",
    "validation_file",
    "text_column",
    "label_column",
    "labels",
    "base_model",
    "max_length",
)
DataCache = dict[tuple[Any, ...], "datasets.TrainingData"]


def _resolve_data(
    settings: Settings, config: TrainConfig, source: str | None, cache: DataCache
) -> tuple[datasets.TrainingData, TrainConfig]:
    """The checked data and the config to train with. Trials that search only training
    settings share one validation pass (on SST-2 it takes longer than a short trial)."""
    key = tuple(str(getattr(config, name)) for name in DATA_FIELDS)
    data = cache.get(key)
    if data is None:
        located = config.model_copy(update={"base_model": source}) if source else config
        data = cache[key] = datasets.resolve_training_data(settings, located)
    resolved = {name: getattr(data.config, name) for name in DATA_FIELDS[:4]}
    return data, config.model_copy(update=resolved)


def train_trial(
    settings: Settings,
    config: TrainConfig,
    logger: TrialLogger,
    progress: ProgressReporter | None,
    stop: StopSignal,
    cache: DataCache | None = None,
) -> TrialRun:
    """Resolve and check the data (registered datasets too; ``cache`` keeps what earlier
    trials of the sweep resolved), then train one trial's run."""
    source = base_model_source(settings, config.base_model)
    try:
        data, run_config = _resolve_data(settings, config, source, {} if cache is None else cache)
        prepared = prepare_training(run_config, source)
    except INPUT_ERRORS as err:
        raise InvalidInput(str(err)) from None
    tags = {**data.tags, SWEEP_TAG: logger.sweep, TRIAL_TAG: str(logger.trial.number)}
    result = run_training(
        run_config,
        settings.storage.results_dir,
        logger=logger,
        progress=progress,
        stop=AnyStop(stop, logger),
        prepared=prepared,
        extra_tags=tags,
    )
    value = float(result.report[logger.metric])
    return TrialRun(result, logger.pruned, value)
