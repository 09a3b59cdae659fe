"""A job's live progress as the UI draws it: metric history and the tail of its log.

Both are read from what the worker writes while the job runs: the metric history from the
job's MLflow run (the tracker id is in the run folder's ``run.json`` from the first step, and
the tracker flushes every two seconds), the log from the run folder's ``logs.txt``. A job that
has not started a run yet has an empty history and an empty log.

Log lines never show the server's folders (results home, working directory, home) or a
configured secret: they are replaced by placeholders before they leave this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.errors import InvalidInput, NotFound
from loralab.settings import Settings
from loralab.training.runs import RunNotFound, RunPaths, find_run, read_state

TRAIN_SERIES = ("train_loss", "train_loss_avg", "learning_rate", "grad_norm")
EVAL_SERIES = ("val_loss", "val_accuracy", "val_macro_f1")
MAX_TAIL = 1000
TAIL_BYTES_PER_LINE = 512

SECRET_WORDS = re.compile(
    r"(?i)\b(password|passwd|secret(?:_key)?|token|api[_-]?key|authorization)\b(\s*[=:]\s*)(\S+)"
)
URL_CREDENTIALS = re.compile(r"(://)[^/\s:@]+:[^/\s@]+@")
BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")


@dataclass(frozen=True)
class RunRef:
    """What progress needs of a job: its id, state and where its run is."""

    task_id: str
    state: str
    run_id: str | None = None
    mlflow_run_id: str | None = None


def run_ref(job: Mapping[str, Any] | object) -> RunRef:
    """The :class:`RunRef` of a job view (a mapping or an object with the same fields)."""

    def pick(name: str) -> Any:
        return job.get(name) if isinstance(job, Mapping) else getattr(job, name, None)

    run_id, mlflow_run_id = pick("run_id"), pick("mlflow_run_id")
    return RunRef(
        str(pick("task_id")),
        str(pick("state")),
        str(run_id) if run_id else None,
        str(mlflow_run_id) if mlflow_run_id else None,
    )


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float


@dataclass(frozen=True)
class JobMetrics:
    """Each series (``train_loss``, ``val_accuracy``, ...) as points ordered by step."""

    task_id: str
    state: str
    series: dict[str, list[MetricPoint]] = field(default_factory=dict)


@dataclass(frozen=True)
class JobLog:
    task_id: str
    state: str
    lines: list[str]
    truncated: bool


def _run_of(settings: Settings, job: RunRef) -> RunPaths | None:
    """The job's run folder, or None before the worker made one."""
    if not job.run_id:
        return None
    try:
        return find_run(settings.storage.results_dir, job.run_id)
    except RunNotFound:
        return None


def _tracker_id(settings: Settings, job: RunRef) -> str | None:
    run = _run_of(settings, job)
    state = read_state(run) if run is not None else {}
    found = state.get("tracker_run_id") or job.mlflow_run_id
    return str(found) if found else None


def job_metrics(settings: Settings, job: RunRef) -> JobMetrics:
    """The metric history of ``job`` (as its owner or an admin sees it), usable mid-run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from loralab.infra.tracking import tracking_uri

    task_id, state = job.task_id, job.state
    tracker = _tracker_id(settings, job)
    if tracker is None:
        return JobMetrics(task_id, state)
    client = MlflowClient(tracking_uri(settings))
    series: dict[str, list[MetricPoint]] = {}
    try:
        for key in TRAIN_SERIES + EVAL_SERIES:
            history = client.get_metric_history(tracker, key)
            if history:
                points = sorted(history, key=lambda m: (m.step, m.timestamp))
                series[key] = [MetricPoint(int(m.step), float(m.value)) for m in points]
    except MlflowException:
        raise NotFound(f"the metric history of job {task_id} is not available") from None
    return JobMetrics(task_id, state, series)


def tail_lines(path: Path, count: int) -> tuple[list[str], bool]:
    """The last ``count`` lines of ``path`` (reading only its end) and whether more exist."""
    if not path.is_file():
        return [], False
    size = path.stat().st_size
    budget = count * TAIL_BYTES_PER_LINE
    with path.open("rb") as handle:
        handle.seek(max(0, size - budget))
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > budget and lines:
        lines = lines[1:]  # the first one is probably cut
    return lines[-count:], size > budget or len(lines) > count


def _placeholders(settings: Settings) -> list[tuple[str, str]]:
    """(text, replacement) pairs, longest text first so nested paths are replaced whole."""
    results = settings.storage.results_dir
    pairs = {
        str(results.resolve()): "<results>",
        str(Path.cwd()): "<cwd>",
        str(Path.home()): "~",
    }
    if not results.is_absolute():
        pairs[str(results)] = "<results>"
    secrets = [settings.auth.secret_key.get_secret_value()]
    if settings.auth.bootstrap_password is not None:
        secrets.append(settings.auth.bootstrap_password.get_secret_value())
    pairs |= {value: "***" for value in secrets if len(value) >= 4}
    return sorted(
        ((k, v) for k, v in pairs.items() if k not in {"", "/", "."}), key=lambda p: -len(p[0])
    )


def scrub_line(line: str, placeholders: list[tuple[str, str]]) -> str:
    """``line`` without server paths, URL credentials or ``password=...``-style values."""
    for text, replacement in placeholders:
        line = line.replace(text, replacement)
    line = URL_CREDENTIALS.sub(r"\1***@", line)
    line = BEARER.sub("Bearer ***", line)
    return SECRET_WORDS.sub(r"\1\2***", line)


def job_log(settings: Settings, job: RunRef, tail: int) -> JobLog:
    """The last ``tail`` lines of the job's run log, scrubbed of paths and secrets."""
    if not 1 <= tail <= MAX_TAIL:
        raise InvalidInput(f"tail: 1 to {MAX_TAIL} lines")
    task_id, state = job.task_id, job.state
    run = _run_of(settings, job)
    if run is None:
        return JobLog(task_id, state, [], False)
    lines, truncated = tail_lines(run.logs, tail)
    placeholders = _placeholders(settings)
    return JobLog(task_id, state, [scrub_line(x, placeholders) for x in lines], truncated)


# --- before a job: what the New job form offers and how long the job will be -------------------


@dataclass(frozen=True)
class BaseModelChoice:
    """A base model a job may name: a catalog entry or a model folder under models_dir."""

    name: str
    hub_id: str | None
    language: str | None
    description: str
    offline: bool


def base_model_choices(settings: Settings) -> list[BaseModelChoice]:
    """The catalog, then the local model folders (by folder name, never a server path)."""
    from loralab.training.catalog import CATALOG

    found = [
        BaseModelChoice(e.name, e.hub_id, e.language, e.description, e.packaged)
        for e in CATALOG.values()
    ]
    folder = settings.storage.models_dir
    if folder is not None and folder.is_dir():
        local = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())
        found += [
            BaseModelChoice(n, None, None, "a local model folder", True)
            for n in local
            if n not in CATALOG
        ]
    return found


@dataclass(frozen=True)
class StepPlan:
    rows: int
    train_rows: int
    batch_size: int
    epochs: float
    steps_per_epoch: int
    steps: int


def step_plan(
    rows: int,
    validation_split: float | None,
    batch_size: int | None,
    epochs: float | None,
    max_steps: int | None,
) -> StepPlan:
    """The optimiser steps a job will run, as the trainer counts them (empty: the defaults)."""
    from loralab.training.config import TrainConfig

    defaults = TrainConfig.model_fields
    split = validation_split or float(defaults["validation_split"].default)
    batch = batch_size or int(defaults["batch_size"].default)
    epochs = epochs or float(defaults["epochs"].default)
    if rows < 2:
        raise InvalidInput("train_file: too few rows to train on")
    train_rows = rows - min(rows - 1, max(1, round(rows * split)))
    per_epoch = math.ceil(train_rows / batch)
    steps = max_steps or math.ceil(per_epoch * epochs)
    return StepPlan(rows, train_rows, batch, epochs, per_epoch, steps)


# --- after a job: its final per-class report and confusion matrix ------------------------------


@dataclass(frozen=True)
class JobReport:
    """The final evaluation of a job's run (empty before the run wrote it)."""

    task_id: str
    labels: list[str]
    per_class: dict[str, dict[str, float]]
    confusion_png: bytes | None


def job_report(settings: Settings, job: RunRef) -> JobReport:
    """Per-class precision/recall/F1/support and the confusion-matrix image of the run."""
    import json

    run = _run_of(settings, job)
    if run is None or not run.metrics.is_file():
        return JobReport(job.task_id, [], {}, None)
    try:
        report = json.loads(run.metrics.read_text(encoding="utf-8")).get("report") or {}
    except (OSError, ValueError):
        report = {}
    png = run.confusion_matrix_png
    return JobReport(
        job.task_id,
        [str(x) for x in report.get("labels") or []],
        dict(report.get("per_class") or {}),
        png.read_bytes() if png.is_file() else None,
    )
