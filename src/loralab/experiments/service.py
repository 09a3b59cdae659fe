"""Experiment services: train, resume, list and show runs, predict with a run.

The CLI trains and resumes with them directly; a job's worker calls the same functions (through
:mod:`loralab.jobs.execution`), and the API reads runs through them.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.datasets import service as datasets
from loralab.datasets.language import check_model_fit, data_language, model_languages
from loralab.errors import InvalidInput, NotFound
from loralab.infra.tracking import RUN_ID_TAG, MlflowTracker
from loralab.settings import Settings
from loralab.training import (
    ConfigError,
    Prediction,
    TrainConfig,
    TrainResult,
    load_config,
    load_predictor,
    prepare_training,
    resume_training,
    run_training,
)
from loralab.training.catalog import CATALOG, ModelSourceError
from loralab.training.data import DataError
from loralab.training.devices import DeviceError
from loralab.training.interfaces import MetricLogger, ProgressReporter, StopSignal
from loralab.training.runs import (
    RunNotFound,
    RunPaths,
    discard_run,
    find_run,
    list_runs,
    read_metrics,
    read_state,
    update_state,
)

if TYPE_CHECKING:
    from loralab.training.prepare import Prepared

INPUT_ERRORS = (ConfigError, DataError, DeviceError, ModelSourceError)
log = logging.getLogger("loralab.experiments")


@dataclass(frozen=True)
class RunSummary:
    experiment: str
    run_id: str
    status: str
    base_model: str
    accuracy: float | None
    macro_f1: float | None
    started: str
    path: Path


@dataclass(frozen=True)
class MlflowRun:
    """One MLflow run as users see it: params, latest metrics, tags and artifact paths (no
    server paths: a path-like value shows as its last part)."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[str]


@dataclass(frozen=True)
class MlflowInfo:
    """Where tracking lives (``tracking_uri``) and where its UI is (``ui``), no credentials."""

    tracking_uri: str
    ui: str


def train(
    settings: Settings,
    config: TrainConfig,
    progress: ProgressReporter | None = None,
    stop: StopSignal | None = None,
    *,
    user: str | None = None,
    model_name: str | None = None,
    run_id: str | None = None,
    register: bool = True,
    observe: Callable[[MetricLogger], MetricLogger] | None = None,
) -> TrainResult:
    """Check the config, data and model, then train and track the run in MLflow.

    A succeeded run is registered (unless ``register`` is False) as a new model version
    (Staging) named ``model_name`` (default: the experiment name) with a model card; a failed
    registration is logged and noted, the run is kept (its state records
    ``registration_error``). ``run_id`` names the run folder (a job records it before training
    starts); default: a new id. ``observe`` wraps the run's MLflow tracker (a sweep trial's job
    reports each evaluation to its trial through it).

    ``train_file`` / ``validation_file`` may name registered datasets (``NAME@VERSION`` or
    ``NAME@latest``): they resolve to the stored copies, the data is validated before any model
    loads, and the run records the exact versions (tags + MLflow dataset inputs) and, for a
    registered dataset, its analysis.
    """
    source = base_model_source(settings, config.base_model)
    data, run_config, prepared = _prepare(settings, config, source, progress)
    tracker = MlflowTracker.from_settings(settings)
    result = run_training(
        run_config,
        settings.storage.results_dir,
        logger=observe(tracker) if observe else tracker,
        progress=progress,
        stop=stop,
        prepared=prepared,
        extra_tags=data.tags,
        run_id=run_id,
    )
    _record_data(settings, tracker, result, data)
    dataset = _dataset_of(data, result)
    # a resumed run registers with the same lineage and data language
    update_state(result.run, dataset=dataset, data_language=data_language(data.report.languages))
    if register and result.status == "succeeded":
        _register(settings, result, run_config, dataset, user, model_name, progress)
    return result


def base_model_source(settings: Settings, name: str) -> str | None:
    """The folder a base-model name stands for when it is a model folder under
    ``storage.models_dir`` (jobs store that name, never the server path); None for a catalog
    name, a hub id or a path, which the training library resolves itself."""
    folder = settings.storage.models_dir
    if folder is None or name in CATALOG or Path(name).name != name or name in {"", ".", ".."}:
        return None
    local = folder / name
    return str(local.resolve()) if (local / "config.json").is_file() else None


def _prepare(
    settings: Settings,
    config: TrainConfig,
    source: str | None,
    progress: ProgressReporter | None,
) -> tuple[datasets.TrainingData, TrainConfig, Prepared]:
    """Resolve and validate the data, then load model and data (bad input: InvalidInput).

    The data is checked with the base model's tokenizer at ``source``; the config the run
    trains with (and records) keeps the base model's name.
    """
    located = config.model_copy(update={"base_model": source}) if source else config
    try:
        data = datasets.resolve_training_data(settings, located)
        _check_language(settings, data, config.base_model, progress)
        _note_data_warnings(data, progress)
        run_config = data.config.model_copy(update={"base_model": config.base_model})
        prepared = prepare_training(run_config, source)
    except INPUT_ERRORS as err:
        raise InvalidInput(str(err)) from None
    return data, run_config, prepared


def _check_language(
    settings: Settings,
    data: datasets.TrainingData,
    base_model: str,
    progress: ProgressReporter | None,
) -> None:
    """Before any model loads: most of the data in a language the base model does not read is
    a warning, or an error where ``datasets.language_mismatch`` says so."""
    report = data.report
    warning = check_model_fit(report.languages, base_model, report.unknown_token_rate)
    if warning is None:
        return
    if settings.datasets.language_mismatch == "error":
        raise InvalidInput(f"{warning[0].upper()}{warning[1:]}")
    log.warning("language: %s", warning)
    if progress is not None:
        progress.note(f"language: {warning}")


def _note_data_warnings(data: datasets.TrainingData, progress: ProgressReporter | None) -> None:
    if progress is None or not data.report.warning_count:
        return
    kinds = ", ".join(
        f"{code.split(':', 1)[1]} {n}"
        for code, n in sorted(data.report.counts.items())
        if code.startswith("warning:")
    )
    progress.note(
        f"data: {data.report.warning_count} warning(s) ({kinds}); "
        "details: loralab data validate FILE"
    )


def _dataset_of(data: datasets.TrainingData, result: TrainResult) -> dict[str, Any]:
    from loralab.registry.service import dataset_ref

    train = data.versions.get("train")
    if train is not None:
        return dataset_ref(train.name, train.version, train.fingerprint)
    return _file_dataset(data.config, read_state(result.run))


def _register(
    settings: Settings,
    result: TrainResult,
    config: TrainConfig,
    dataset: dict[str, Any],
    user: str | None,
    model_name: str | None,
    progress: ProgressReporter | None,
) -> None:
    """Register the run in the model registry; never lose the trained run over it."""
    from loralab.registry.service import RegistryService

    name = model_name or config.experiment
    if progress is not None:
        progress.note(f"registering model {name}")
    registry = RegistryService(settings)
    try:
        card = registry.register_run(name=name, **_card_fields(result, config, dataset, user))
    except Exception as err:  # noqa: BLE001 - the model is trained; registration is extra
        log.warning("registering run %s failed: %s", result.run.run_id, err)
        update_state(result.run, registration_error=str(err))
        if progress is not None:
            progress.note(f"model registration failed (run kept): {err}")
        return
    finally:
        registry.close()
    update_state(result.run, registered_model=card.ref)
    if progress is not None:
        progress.note(f"registered model {card.ref} (Staging)")


def _card_fields(
    result: TrainResult, config: TrainConfig, dataset: dict[str, Any], user: str | None
) -> dict[str, Any]:
    """What the model card says of a run: base model, labels, metrics, data, LoRA, training."""
    import getpass

    state = read_state(result.run)
    return {
        "run_id": result.tracker_run_id,
        "base_model": config.base_model,
        "language": state.get("data_language") or state.get("language", ""),
        "base_languages": [
            x for x in model_languages(config.base_model) or [state.get("language")] if x
        ],
        "labels": list(state.get("labels", [])),
        "metrics": {
            k: float(result.report[k])
            for k in ("accuracy", "macro_f1")
            if isinstance(result.report.get(k), int | float)
        },
        "dataset": dataset,
        "lora": {
            "r": config.lora_r,
            "alpha": config.lora_alpha,
            "dropout": config.lora_dropout,
            "target_modules": list(config.lora_target_modules or []) or None,
        },
        "training": {
            k: getattr(config, k)
            for k in ("epochs", "batch_size", "learning_rate", "max_length", "weight_decay")
        },
        "created_by": user or getpass.getuser(),
        "tags": {"experiment": config.experiment, "loralab.run_id": result.run.run_id},
    }


def _record_data(
    settings: Settings,
    tracker: MlflowTracker,
    result: TrainResult,
    data: datasets.TrainingData,
) -> None:
    """Beside the run: the validation report, dataset inputs and an analysis of the data."""
    report = result.run.root / "data_validation.json"
    report.write_text(json.dumps(data.report.to_dict(), indent=1, ensure_ascii=False), "utf-8")
    run_id = result.tracker_run_id
    tracker.log_artifacts_to(run_id, report)
    for role, version in data.versions.items():
        tracker.log_dataset_input(
            run_id,
            version.ref,
            version.fingerprint,
            str(datasets.store_for(settings).file_of(version)),
            context="training" if role == "train" else "validation",
            profile={"rows": version.rows, "labels": version.label_counts},
        )
    train = data.versions.get("train")
    if train is None:
        return
    out = result.run.root / "data_analysis"
    try:
        spec = datasets.DataSpec.from_config(data.config)
        shutil.copytree(datasets.version_analysis(settings, train, spec), out)
    except Exception as err:  # noqa: BLE001 - the model is trained; the analysis is extra
        log.warning("analysis of %s failed: %s", train.ref, err)
        return
    tracker.log_artifacts_to(run_id, out, "data_analysis")


def resume(
    settings: Settings,
    run_id: str,
    overrides: list[str],
    progress: ProgressReporter | None = None,
    stop: StopSignal | None = None,
    *,
    user: str | None = None,
    model_name: str | None = None,
    observe: Callable[[MetricLogger], MetricLogger] | None = None,
) -> TrainResult:
    """Continue a run from its last complete checkpoint, in the same MLflow run.

    A run that another machine trained is first rebuilt here from its checkpoint copies in the
    shared artifact store (shared artifacts on; ``shared_runs.rebuild_run``). A run that
    finishes is registered (as ``model_name``, by ``user``) unless it already was.
    """
    run = _local_or_rebuilt(settings, run_id)
    tracker = MlflowTracker.from_settings(settings)
    try:
        source = base_model_source(settings, load_config(run.config).base_model)
        result = resume_training(
            run,
            overrides,
            logger=observe(tracker) if observe else tracker,
            progress=progress,
            stop=stop,
            base_source=source,
        )
    except INPUT_ERRORS as err:
        raise InvalidInput(str(err)) from None
    state = read_state(run)
    if result.status == "succeeded" and not state.get("registered_model"):
        config = load_config(run.config)
        dataset = state.get("dataset") or _file_dataset(config, state)
        _register(settings, result, config, dataset, user, model_name, progress)
    return result


FINISHED = frozenset({"succeeded", "failed", "stopped"})  # run states whose tracker run ended


def close_run(settings: Settings, run_id: str, *, status: str, error: str | None) -> None:
    """End a run its job finished without: a worker killed mid-run, a job that gave up, was
    cancelled or failed before training went on. A run still ``running`` in its state becomes
    ``status`` (failed or stopped) and its MLflow runs still RUNNING end FAILED or KILLED; a
    run that ended itself is left alone (nothing asks MLflow then)."""
    try:
        run = find_run(settings.storage.results_dir, run_id)
    except RunNotFound:
        return
    if read_state(run).get("status") in FINISHED:
        return
    update_state(run, status=status, error=error, finished_at=time.time())
    _end_tracking(settings, run, "KILLED" if status == "stopped" else "FAILED")


def abandon_run(settings: Settings, run_id: str) -> None:
    """A run a killed worker left before its first complete checkpoint has nothing to resume
    from: its MLflow runs end KILLED and its folder is deleted, so the job's next attempt
    trains its one run again from the start (same run id) instead of leaving an orphan."""
    try:
        run = find_run(settings.storage.results_dir, run_id)
    except RunNotFound:
        return
    log.warning("run %s: no complete checkpoint; closing it and training again", run_id)
    _end_tracking(settings, run, "KILLED")
    discard_run(run)


def _end_tracking(settings: Settings, run: RunPaths, status: str) -> None:
    """Terminate (as ``status``) the MLflow runs of ``run`` that still say RUNNING, found by
    the run-id tag (the state may not name a tracker run yet). Tracking down: logged only."""
    try:
        client = MlflowTracker.from_settings(settings).client
        experiment = client.get_experiment_by_name(run.experiment)
        if experiment is None:
            return
        found = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}' and attributes.status = 'RUNNING'",
        )
        for tracked in found:
            client.set_terminated(tracked.info.run_id, status=status)
    except Exception as err:  # noqa: BLE001 - a tracker that is down must not block the job
        log.warning("run %s: cannot end its MLflow run: %s", run.run_id, err)


def _file_dataset(config: TrainConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Lineage of a run trained on a plain file: its name and content fingerprint."""
    from loralab.registry.service import dataset_ref

    return dataset_ref(Path(config.train_file).name, None, state.get("dataset_fingerprint"))


def _local_or_rebuilt(settings: Settings, run_id: str) -> RunPaths:
    from loralab.experiments.shared_runs import rebuild_run

    try:
        return find_run(settings.storage.results_dir, run_id)
    except RunNotFound as err:
        rebuilt = rebuild_run(settings, run_id)
        if rebuilt is None:
            raise NotFound(str(err)) from None
        return rebuilt


def get_run(settings: Settings, run_id: str) -> RunPaths:
    try:
        return find_run(settings.storage.results_dir, run_id)
    except RunNotFound as err:
        raise NotFound(str(err)) from None


def _started(state: dict[str, Any]) -> str:
    stamp = state.get("started_at")
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else ""


def summarize(run: RunPaths) -> RunSummary:
    state = read_state(run)
    return RunSummary(
        run.experiment,
        run.run_id,
        state.get("status", "unknown"),
        state.get("base_model", ""),
        state.get("accuracy"),
        state.get("macro_f1"),
        _started(state),
        run.root,
    )


def list_run_summaries(settings: Settings, experiment: str | None = None) -> list[RunSummary]:
    runs = list_runs(settings.storage.results_dir)
    return [summarize(r) for r in runs if experiment is None or r.experiment == experiment]


def show_run(settings: Settings, run_id: str) -> dict[str, Any]:
    """Everything known about a run: state, config, metrics, files."""
    run = get_run(settings, run_id)
    return {
        "summary": summarize(run),
        "state": read_state(run),
        "config": run.config.read_text(encoding="utf-8"),
        "metrics": read_metrics(run),
        "files": sorted(str(p.relative_to(run.root)) for p in run.root.iterdir()),
    }


def predict(
    settings: Settings, run_id: str, texts: list[str], device: str = "auto"
) -> list[Prediction]:
    if not texts or any(not t.strip() for t in texts):
        raise InvalidInput("give one or more non-empty texts")
    run = get_run(settings, run_id)
    try:
        predictor = load_predictor(run, device=device)
    except INPUT_ERRORS as err:
        raise InvalidInput(str(err)) from None
    return predictor.predict(texts)


def latest_run(settings: Settings, experiment: str | None = None) -> RunPaths:
    for summary in list_run_summaries(settings, experiment):
        if summary.status in {"succeeded", "stopped"}:
            return RunPaths(summary.path)
    raise NotFound("no finished run yet: train one with `loralab train CONFIG`")


MLFLOW_RUN_ID = set("0123456789abcdef")


def mlflow_run(settings: Settings, run_id: str) -> MlflowRun:
    """Params, metrics (latest values) and artifact paths of one MLflow run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from loralab.infra.tracking import tracking_uri

    if not 1 <= len(run_id) <= 64 or not set(run_id) <= MLFLOW_RUN_ID:
        raise NotFound(f"no MLflow run {run_id[:64]!r}")
    client = MlflowClient(tracking_uri(settings))
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise NotFound(f"no MLflow run {run_id!r}") from None
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    for folder in [a for a in client.list_artifacts(run_id) if a.is_dir]:
        artifacts += [a.path for a in client.list_artifacts(run_id, folder.path)]
    return MlflowRun(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        run_name=run.info.run_name,
        status=run.info.status,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        params={k: _no_path(v) for k, v in run.data.params.items()},
        metrics=dict(run.data.metrics),
        tags={k: _no_path(v) for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        artifacts=sorted(artifacts),
    )


def _no_path(value: str) -> str:
    """A server path shows as its last part (users never see the server's folders)."""
    return Path(value).name if value.startswith("/") else value


def mlflow_info(settings: Settings) -> MlflowInfo:
    """Where tracking lives, for users (no credentials: any user:password@ part is dropped)."""
    from urllib.parse import urlsplit, urlunsplit

    from loralab.infra.tracking import tracking_uri

    uri = tracking_uri(settings)
    parts = urlsplit(uri)
    if parts.scheme in {"http", "https"}:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        uri = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        ui = uri
    else:
        uri = (
            parts.scheme + ":" + ("///<results home>/mlflow.db" if parts.scheme == "sqlite" else "")
        )
        ui = f"http://127.0.0.1:{settings.mlflow.ui_port} (make mlflow-ui)"
    return MlflowInfo(tracking_uri=uri, ui=ui)
