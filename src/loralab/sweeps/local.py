"""Run a sweep in this process: ``loralab sweep FILE`` (and ``--resume NAME``).

The study lives in the project's database (:mod:`loralab.sweeps.storage`), so the same command
run on several machines (``--resume NAME``) shares one study: each worker asks Optuna's sampler
(TPE) for the next settings, trains them, and tells the result. The budget counts every trial
of the study but those a user interrupted (Ctrl-C), so a resumed sweep runs what is left.
``minutes`` is this worker's wall time: no new trial starts after it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.errors import Conflict, InvalidInput, LoralabError, NotFound
from loralab.infra.tracking import MlflowTracker
from loralab.settings import Settings
from loralab.sweeps.report import TrialRow, best_row, plot_metric, rows_of, write_recipe
from loralab.sweeps.space import suggest
from loralab.sweeps.spec import SweepSpec
from loralab.sweeps.storage import study_storage
from loralab.sweeps.trials import SWEEP_TAG, TrialLogger, train_trial
from loralab.training.errors import TrainingFailed
from loralab.training.interfaces import NeverStop, ProgressReporter, StopSignal

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from loralab.training import TrainConfig

log = logging.getLogger("loralab.sweeps")
KIND_LOCAL = "local"
INTERRUPTED = "interrupted"


class SweepStopped(LoralabError):
    """The user stopped the sweep (Ctrl-C): the running trial ends, no new one starts."""


@dataclass(frozen=True)
class SweepOutcome:
    """A sweep after this worker's part: every trial of the study, the best, the files."""

    name: str
    metric: str
    rows: list[TrialRow]
    best: TrialRow | None
    folder: Path
    plot: Path
    recipe: Path | None
    parent_run_id: str | None
    stopped: bool


def sweep_folder(settings: Settings, name: str) -> Path:
    """``<results>/_sweeps/<name>/``: no experiment name starts with ``_``, so no run folder
    ever lands here."""
    return settings.storage.results_dir / "_sweeps" / name


def default_name(base: TrainConfig) -> str:
    return f"{base.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"


def _space_of(spec: SweepSpec) -> str:
    return json.dumps({k: v.model_dump() for k, v in spec.space.items()}, sort_keys=True)


def open_study(
    settings: Settings, name: str, spec: SweepSpec, base: TrainConfig, resume: bool
) -> optuna.Study:
    """A new study named ``name`` (Conflict if it exists), or the existing one to resume
    (NotFound if missing; InvalidInput if its space, metric or base settings differ)."""
    import optuna

    storage = study_storage(settings.db_url, heartbeat=True)
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if resume and not exists:
        raise NotFound(f"no sweep {name!r} to resume")
    if not resume and exists:
        raise Conflict(f"sweep {name!r} exists: resume it with --resume {name}, or pick a name")
    # The seed fixes a new sweep's draws. A resumed sweep (or another worker) draws afresh: a
    # sampler seeded the same in a new process would repeat the first trials' settings.
    sampler = optuna.samplers.TPESampler(seed=None if resume else spec.seed)
    if resume:
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=sampler, pruner=spec.pruner.build()
        )
        attrs = study.user_attrs
        if attrs.get("kind") != KIND_LOCAL:
            raise InvalidInput(f"sweep {name!r} runs as jobs on the queue: see GET /sweeps/{name}")
        if attrs.get("space") != _space_of(spec) or attrs.get("metric") != spec.metric:
            raise InvalidInput(
                f"the sweep file's space or metric differs from sweep {name!r}'s: resume it "
                "with the file it started with"
            )
        changed = sorted(
            k for k, v in base.to_dict().items() if (attrs.get("base") or {}).get(k) != v
        )
        if changed:
            raise InvalidInput(
                f"settings differ from sweep {name!r}'s ({', '.join(changed)}): resume it with "
                "the file and overrides it started with"
            )
        return study
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=spec.pruner.build(),
    )
    study.set_user_attr("kind", KIND_LOCAL)
    study.set_user_attr("space", _space_of(spec))
    study.set_user_attr("metric", spec.metric)
    study.set_user_attr("base", base.to_dict())
    return study


def counted(trials: list[FrozenTrial]) -> int:
    """Trials the budget counts: all but those a user interrupted."""
    return sum(1 for t in trials if not t.user_attrs.get(INTERRUPTED))


def _parent_run(settings: Settings, study: optuna.Study, experiment: str, spec: SweepSpec) -> str:
    """Open the sweep's MLflow run (the trials' parent), or reopen it on resume."""
    tracker = MlflowTracker.from_settings(settings)
    existing = study.user_attrs.get("parent_run_id")
    run_id = tracker.start_run(experiment, f"sweep-{study.study_name}", existing)
    if not existing:
        study.set_user_attr("parent_run_id", run_id)
        tracker.set_tags({SWEEP_TAG: study.study_name, "loralab.sweep.role": "parent"})
        tracker.log_params(
            {
                "sweep.metric": spec.metric,
                "sweep.space": _space_of(spec)[:6000],
                "sweep.budget.trials": spec.budget.trials or "",
                "sweep.budget.minutes": spec.budget.minutes or "",
                "sweep.pruner": spec.pruner.kind,
            }
        )
    tracker.run_id = None  # the run stays open for the trials; it ends in _finish
    return run_id


ProgressFor = Callable[[int, dict[str, Any], "TrainConfig"], ProgressReporter | None]


def run_sweep(
    settings: Settings,
    spec: SweepSpec,
    *,
    root: Path = Path("."),
    name: str | None = None,
    resume: bool = False,
    overrides: list[str] | None = None,
    stop: StopSignal | None = None,
    progress_for: ProgressFor | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep here until its budget is spent or ``stop`` is set.

    ``overrides``: ``key=value`` settings over the file's (e.g. ``base_model=...``).
    Bad input (space, settings, name) raises before any trial or MLflow run exists.
    """
    base = spec.base_config(root, overrides)
    spec.check(base)
    name = name or spec.name or default_name(base)
    study = open_study(settings, name, spec, base, resume)
    parent = _parent_run(settings, study, base.experiment, spec)
    stop = stop or NeverStop()
    objective = _objective(settings, spec, base, parent, stop, progress_for)
    stopped = False
    try:
        remaining = _remaining(spec, study)
        if remaining is None or remaining > 0:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=spec.budget.minutes * 60 if spec.budget.minutes else None,
                catch=(TrainingFailed,),
                callbacks=[_budget_callback(spec, stop)],
            )
    except SweepStopped:
        stopped = True
    return _finish(settings, study, spec, base, parent, stopped)


def _remaining(spec: SweepSpec, study: optuna.Study) -> int | None:
    if spec.budget.trials is None:
        return None
    return max(0, spec.budget.trials - counted(study.get_trials(deepcopy=False)))


def _budget_callback(spec: SweepSpec, stop: StopSignal) -> Callable[..., None]:
    """Stop once the study holds its budget of trials (other workers' count too) or on
    Ctrl-C."""

    def check(study: optuna.Study, _trial: FrozenTrial) -> None:
        if stop.is_set() or _remaining(spec, study) == 0:
            study.stop()

    return check


def _objective(
    settings: Settings,
    spec: SweepSpec,
    base: TrainConfig,
    parent: str,
    stop: StopSignal,
    progress_for: ProgressFor | None,
) -> Callable[[optuna.Trial], float]:
    import optuna

    from loralab.sweeps.trials import DataCache

    cache: DataCache = {}

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, spec.space)
        trial.set_user_attr("settings", params)
        config = spec.trial_config(base, params)
        logger = TrialLogger(
            MlflowTracker.from_settings(settings),
            trial,
            spec.metric,
            parent,
            trial.study.study_name,
        )
        progress = progress_for(trial.number, params, config) if progress_for else None
        try:
            ran = train_trial(settings, config, logger, progress, stop, cache)
        except TrainingFailed as err:
            trial.set_user_attr("error", str(err)[:500])
            raise
        trial.set_user_attr("run_id", ran.result.run.run_id)
        trial.set_user_attr("mlflow_run_id", ran.result.tracker_run_id)
        run_id = ran.result.tracker_run_id
        if ran.pruned and ran.result.status == "stopped":  # pruned at the last evaluation:
            logger.mark(run_id, "PRUNED")  # the run had ended anyway, and counts as complete
            raise optuna.TrialPruned(f"pruned at step {logger.reported[-1][0]}")
        if stop.is_set():
            logger.mark(run_id, "INTERRUPTED")
            trial.set_user_attr(INTERRUPTED, True)
            raise SweepStopped("stopped by the user")
        logger.mark(run_id, "COMPLETE")
        return ran.value

    return objective


def _finish(
    settings: Settings,
    study: optuna.Study,
    spec: SweepSpec,
    base: TrainConfig,
    parent: str,
    stopped: bool,
) -> SweepOutcome:
    """The summary files (plot, trials, best recipe), logged to the parent run, which ends."""
    name = study.study_name
    rows = rows_of(study.get_trials(deepcopy=False))
    best = best_row(rows)
    folder = sweep_folder(settings, name)
    folder.mkdir(parents=True, exist_ok=True)
    plot = plot_metric(rows, spec.metric, f"sweep {name}", folder / "metric_by_trial.png")
    (folder / "trials.json").write_text(
        json.dumps([r.__dict__ for r in rows], indent=1, default=str), encoding="utf-8"
    )
    recipe = None
    if best is not None:
        recipe = write_recipe(
            spec.trial_config(base, best.params),
            folder / "best.yaml",
            f"Best of sweep {name}: {spec.metric} {best.value:.4f} (trial {best.number}, run "
            f"{best.run_id}; {len(rows)} trials).\nRun:  loralab train {folder / 'best.yaml'}",
        )
    tracker = MlflowTracker.from_settings(settings)
    tracker.start_run(base.experiment, f"sweep-{name}", parent)
    try:
        if best is not None and best.value is not None:
            tracker.log_metrics({f"best_{spec.metric}": best.value}, best.number)
            tracker.set_tags({"loralab.sweep.best_trial": str(best.number)})
        for path in (plot, folder / "trials.json", *([recipe] if recipe else [])):
            tracker.log_artifact(path)
    finally:
        tracker.end_run("KILLED" if stopped else "FINISHED")
    return SweepOutcome(name, spec.metric, rows, best, folder, plot, recipe, parent, stopped)
