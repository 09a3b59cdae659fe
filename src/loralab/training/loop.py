"""run_training: the whole of one LoRA fine-tuning run, from config to a reloadable model.

Everything that bad input can break (device, base model, data) is checked in
:func:`prepare_training` before a run folder or tracker run exists, so a bad config leaves
nothing behind. Training itself runs on the Hugging Face Trainer with callbacks for progress,
tracking, the stop signal, atomic checkpoint markers and best/last/fastest retention.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from loralab import __version__
from loralab.training import checkpoints as ckpt
from loralab.training.callbacks import GuardedTrainer, RunCallback
from loralab.training.config import ConfigError, TrainConfig, load_config, save_config
from loralab.training.errors import DiskFull, OutOfMemory, TrainingFailed, is_disk_full
from loralab.training.evaluation import (
    classification_report,
    plot_confusion_matrix,
    summary_metrics,
)
from loralab.training.files import atomic_write_json
from loralab.training.interfaces import (
    MetricLogger,
    NeverStop,
    NullLogger,
    ProgressReporter,
    StopSignal,
)
from loralab.training.model import trainable_parameters
from loralab.training.notebook import default_progress
from loralab.training.pooling import resolve_pooling
from loralab.training.prepare import Prepared, prepare_training
from loralab.training.runs import RunPaths, create_run, discard_run, read_state, update_state

log = logging.getLogger("loralab.training")

# Settings that may change when a run resumes; everything else would make the checkpoint lie.
RESUMABLE_FIELDS = {
    "epochs",
    "max_steps",
    "early_stopping_patience",
    "device",
    "precision",
    "num_threads",
    "eval_batch_size",
    "logging_steps",
}


@dataclass
class TrainResult:
    run: RunPaths
    status: str  # succeeded | stopped
    report: dict[str, Any]
    best_step: int | None
    retention: ckpt.Retention
    train_seconds: float
    samples_per_second: float
    device: str
    tracker_run_id: str
    history: list[dict[str, float]] = field(default_factory=list)


def _training_arguments(prepared: Prepared, output_dir: Path, train_rows: int) -> TrainingArguments:
    config = prepared.config
    steps_per_epoch = math.ceil(train_rows / config.batch_size)
    total = config.max_steps or math.ceil(steps_per_epoch * config.epochs)
    strategy = "steps" if config.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=int(total * config.warmup_ratio),
        lr_scheduler_type=config.lr_scheduler,
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps or 500,  # used only with the "steps" strategy
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        load_best_model_at_end=True,
        metric_for_best_model=config.metric_for_best,
        greater_is_better=config.metric_for_best != "loss",
        save_total_limit=None,  # retention is ours: best, last and fastest
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        seed=config.seed,
        bf16=prepared.device.precision == "bf16",
        fp16=prepared.device.precision == "fp16",
        use_cpu=prepared.device.device == "cpu",
        dataloader_pin_memory=prepared.device.device == "cuda",
        auto_find_batch_size=True,  # out of memory: shrink the batch 10% and start again
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
    )


def _compute_metrics(num_labels: int) -> Any:
    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        return summary_metrics(labels, np.argmax(logits, axis=-1), num_labels)

    return compute


def _attach_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    for name in ("loralab", "transformers"):
        logging.getLogger(name).addHandler(handler)
    # Our own INFO lines go to the file; transformers keeps its level (warnings and up).
    if logging.getLogger("loralab").getEffectiveLevel() > logging.INFO:
        logging.getLogger("loralab").setLevel(logging.INFO)
    return handler


def _detach_log_file(handler: logging.Handler) -> None:
    for name in ("loralab", "transformers"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def _tags(prepared: Prepared) -> dict[str, str]:
    return {
        "base_model": prepared.config.base_model,
        "language": prepared.base.language,
        "device": prepared.device.description,
        "precision": prepared.device.precision,
        "dataset_fingerprint": prepared.fingerprint,
        "loralab_version": __version__,
        "num_labels": str(len(prepared.labels)),
        "pooling": resolve_pooling(prepared.config.pooling, prepared.config.base_model),
    }


def _flat_params(config: TrainConfig) -> dict[str, Any]:
    return {
        k: ("" if v is None else ",".join(v) if isinstance(v, list) else v)
        for k, v in config.to_dict().items()
    }


def run_training(
    config: TrainConfig,
    results_dir: Path,
    *,
    logger: MetricLogger | None = None,
    progress: ProgressReporter | None = None,
    stop: StopSignal | None = None,
    prepared: Prepared | None = None,
    extra_tags: dict[str, str] | None = None,
    run_id: str | None = None,
) -> TrainResult:
    """Train a new run. Bad input raises before any run folder or tracker run is created.

    ``extra_tags`` are added to the tracker run's tags (e.g. the dataset version trained on).
    ``run_id`` names the run folder (default: a new id).
    """
    prepared = prepared or prepare_training(config)
    run = create_run(Path(results_dir), config, run_id)
    return _execute(
        prepared,
        run,
        logger or NullLogger(),
        progress or default_progress(config.batch_size),
        stop or NeverStop(),
        resume_from=None,
        extra_tags=extra_tags,
    )


def check_resume_overrides(overrides: list[str]) -> None:
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key not in RESUMABLE_FIELDS:
            allowed = ", ".join(sorted(RESUMABLE_FIELDS))
            raise ConfigError(f"{key}: cannot change when resuming (may change: {allowed})")


def resume_training(
    run: RunPaths,
    overrides: list[str] | None = None,
    *,
    logger: MetricLogger | None = None,
    progress: ProgressReporter | None = None,
    stop: StopSignal | None = None,
    base_source: str | None = None,
) -> TrainResult:
    """Continue a run from its last complete checkpoint, in the same folder and tracker run.

    ``base_source``: where to load the base model from when the caller resolved its name.
    """
    overrides = overrides or []
    check_resume_overrides(overrides)
    config = load_config(run.config, overrides)
    ckpt.remove_incomplete(run.checkpoints)
    last = ckpt.last_complete(run.checkpoints)
    if last is None:
        raise ConfigError(f"run {run.run_id} has no complete checkpoint to resume from")
    prepared = prepare_training(config, base_source)
    if read_state(run).get("dataset_fingerprint") not in (None, prepared.fingerprint):
        raise ConfigError(f"run {run.run_id}: the training data changed since the run started")
    if overrides:
        save_config(config, run.config)  # config.yaml stays the complete, resolved truth
    return _execute(
        prepared,
        run,
        logger or NullLogger(),
        progress or default_progress(config.batch_size),
        stop or NeverStop(),
        resume_from=last,
    )


def _execute(
    prepared: Prepared,
    run: RunPaths,
    logger: MetricLogger,
    progress: ProgressReporter,
    stop: StopSignal,
    resume_from: Path | None,
    extra_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Open the tracker run, record the start, train; a failure or a stop ends both runs."""
    handler = _attach_log_file(run.logs)
    state = read_state(run)
    try:
        tracker_id = logger.start_run(
            prepared.config.experiment, run.run_id, state.get("tracker_run_id")
        )
    except Exception:
        _detach_log_file(handler)
        if resume_from is None:
            discard_run(run)  # the tracker is unreachable: leave no half-made run behind
        raise
    try:
        _mark_running(prepared, run, tracker_id, state.get("started_at"))
        try:
            _record_start(prepared, run, logger, resume_from, extra_tags)
            return _train(prepared, run, logger, progress, stop, resume_from, tracker_id)
        except BaseException as err:
            _record_failure(run, logger, progress, err)
            raise
    finally:
        _detach_log_file(handler)


def _mark_running(
    prepared: Prepared, run: RunPaths, tracker_id: str, started_at: float | None
) -> None:
    """The run state: running, on which tracker run, device, data and base model."""
    update_state(
        run,
        status="running",
        tracker_run_id=tracker_id,
        device=prepared.device.description,
        dataset_fingerprint=prepared.fingerprint,
        base_model=prepared.config.base_model,
        language=prepared.base.language,
        labels=prepared.labels,
        started_at=started_at or time.time(),
    )


def _record_start(
    prepared: Prepared,
    run: RunPaths,
    logger: MetricLogger,
    resume_from: Path | None,
    extra_tags: dict[str, str] | None,
) -> None:
    """Params (a new run only) and tags to the tracker, one summary line to logs.txt."""
    if resume_from is None:
        logger.log_params(_flat_params(prepared.config))
    logger.set_tags({**_tags(prepared), **(extra_tags or {}), "run_id": run.run_id})
    trainable, total = trainable_parameters(prepared.model)
    log.info(
        "run %s: %s on %s; %d train / %d validation rows; %d labels; %d of %d parameters trainable",
        run.run_id,
        prepared.config.base_model,
        prepared.device.description,
        prepared.train_rows,
        prepared.validation_rows,
        len(prepared.labels),
        trainable,
        total,
    )


def _record_failure(
    run: RunPaths, logger: MetricLogger, progress: ProgressReporter, err: BaseException
) -> None:
    """The run ends stopped (Ctrl-C) or failed, in its state and in the tracker.

    Each step is tried on its own: on a full disk the state file may not be writable, and the
    tracker run must still end (never RUNNING forever) and ``err`` still reach the caller.
    """
    status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
    log.error("run %s %s: %s", run.run_id, status, err)
    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "state",
            lambda: update_state(run, status=status, error=str(err), finished_at=time.time()),
        ),
        ("log upload", lambda: logger.log_artifact(run.logs)),
        ("tracker run end", lambda: logger.end_run("KILLED" if status == "stopped" else "FAILED")),
    ]
    for what, step in steps:
        try:
            step()
        except Exception as step_err:  # noqa: BLE001 - the first error is the one to report
            log.error("run %s: could not record the %s: %s", run.run_id, what, step_err)
    progress.finish()


def _train(
    prepared: Prepared,
    run: RunPaths,
    logger: MetricLogger,
    progress: ProgressReporter,
    stop: StopSignal,
    resume_from: Path | None,
    tracker_id: str,
) -> TrainResult:
    """Build the trainer, train, report on the best model, write metrics, log to the tracker."""
    callback = RunCallback(prepared.config, run, logger, progress, stop)
    trainer = _build_trainer(prepared, run, callback)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        outcome = _final_report(prepared, trainer, callback)
        _save_model(prepared, run)
        plot_confusion_matrix(outcome.report, str(run.confusion_matrix_png))
        metrics = _metrics(prepared, trainer, callback, outcome)
        atomic_write_json(run.metrics, metrics, sort_keys=True)
        _log_final(run, logger, outcome, trainer.state.global_step)
    except Exception as err:
        clearer = _clearer_failure(err, run, trainer.state.global_step, prepared)
        if clearer is None:
            raise
        raise clearer from err
    return TrainResult(
        run,
        outcome.status,
        outcome.report,
        outcome.best_step,
        callback.retention,
        outcome.seconds,
        outcome.samples_per_second,
        prepared.device.description,
        tracker_id,
        callback.history,
    )


NO_BATCH_FITS = "No executable batch size found"  # accelerate, after shrinking the batch to 0


def _clearer_failure(
    err: Exception, run: RunPaths, step: int, prepared: Prepared
) -> TrainingFailed | None:
    """A full disk or an out-of-memory at batch size 1, said plainly (None: keep ``err``).

    On a full disk the checkpoint being written (no marker yet) is deleted to give its space
    back; the complete ones stay, so the run resumes from the last of them.
    """
    if is_disk_full(err):
        ckpt.remove_incomplete(run.checkpoints)
        last = ckpt.last_complete(run.checkpoints)
        then = (
            f"the last complete checkpoint (step {ckpt.checkpoint_step(last)}) is kept: free "
            f"space, then resume the run (loralab resume {run.run_id})"
            if last is not None
            else "no checkpoint was complete yet: free space, then train again"
        )
        return DiskFull(
            f"disk full at step {step}: no space left on the device that holds the run. "
            f"Nothing half-written was kept; {then}."
        )
    if isinstance(err, RuntimeError) and str(err).startswith(NO_BATCH_FITS):
        return OutOfMemory(
            f"out of memory at batch size 1 on {prepared.device.description}: even one example "
            "does not fit. Lower max_length, choose a smaller base_model or another device."
        )
    return None


@dataclass(frozen=True)
class _Outcome:
    """What a finished (or stopped) training produced, before it is written anywhere."""

    status: str
    report: dict[str, Any]
    best_step: int | None
    seconds: float
    batch_size: int
    samples_per_second: float


def _build_trainer(prepared: Prepared, run: RunPaths, callback: RunCallback) -> GuardedTrainer:
    """The Hugging Face trainer with our callbacks and without its console printers."""
    config = prepared.config
    callbacks: list[TrainerCallback] = [callback]
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience))
    trainer = GuardedTrainer(
        model=prepared.model,
        args=_training_arguments(prepared, run.checkpoints, prepared.train_rows),
        train_dataset=prepared.train,
        eval_dataset=prepared.validation,
        data_collator=DataCollatorWithPadding(prepared.tokenizer),
        processing_class=prepared.tokenizer,
        compute_metrics=_compute_metrics(len(prepared.labels)),
        callbacks=callbacks,
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    callback.trainer = trainer
    return trainer


def _final_report(prepared: Prepared, trainer: GuardedTrainer, callback: RunCallback) -> _Outcome:
    """The report on the best model (loaded by load_best_model_at_end) and the throughput."""
    output = trainer.predict(prepared.validation)  # type: ignore[arg-type]
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    truth = np.asarray(output.label_ids)
    report = classification_report(truth, np.argmax(logits, axis=-1), prepared.labels)
    steps_run = trainer.state.global_step - callback.first_step
    seconds = max(1e-9, callback.finished - callback.started - callback.eval_seconds)
    batch_size = trainer.state.train_batch_size or prepared.config.batch_size
    return _Outcome(
        status="stopped" if callback.stopped else "succeeded",
        report=report,
        best_step=callback.retention.best,
        seconds=seconds,
        batch_size=batch_size,
        samples_per_second=steps_run * batch_size / seconds,
    )


def _metrics(
    prepared: Prepared, trainer: GuardedTrainer, callback: RunCallback, outcome: _Outcome
) -> dict[str, Any]:
    """What metrics.json holds: status, final and per-class report, history, throughput."""
    report = outcome.report
    return {
        "status": outcome.status,
        "final": {k: report[k] for k in ("accuracy", "macro_f1")},
        "report": report,
        "history": callback.history,
        "train": {
            "steps": trainer.state.global_step,
            "epochs": round(float(trainer.state.epoch or 0.0), 3),
            "train_seconds": round(outcome.seconds, 2),
            "samples_per_second": round(outcome.samples_per_second, 1),
            "train_rows": prepared.train_rows,
            "batch_size": outcome.batch_size,
            "validation_rows": prepared.validation_rows,
        },
        "checkpoints": {
            "best": outcome.best_step,
            "last": callback.retention.last,
            "fastest": callback.retention.fastest,
        },
        "device": prepared.device.description,
    }


def _log_final(run: RunPaths, logger: MetricLogger, outcome: _Outcome, final_step: int) -> None:
    """Final metrics and artifacts to the tracker, the run state finished, the tracker run
    ended."""
    report = outcome.report
    logger.log_metrics(
        {f"final_{k}": float(report[k]) for k in ("accuracy", "macro_f1")}, final_step
    )
    logger.log_metrics({"samples_per_second": outcome.samples_per_second}, final_step)
    for path in (run.config, run.metrics, run.confusion_matrix_png):
        logger.log_artifact(path)
    logger.log_artifact(run.adapter, "adapter")
    logger.log_artifact(run.label_map)
    update_state(
        run,
        status=outcome.status,
        finished_at=time.time(),
        best_step=outcome.best_step,
        accuracy=report["accuracy"],
        macro_f1=report["macro_f1"],
        error=None,
    )
    log.info(
        "run %s %s: accuracy %.4f, macro F1 %.4f, %.1f samples/s",
        run.run_id,
        outcome.status,
        report["accuracy"],
        report["macro_f1"],
        outcome.samples_per_second,
    )
    logger.log_artifact(run.logs)
    logger.end_run("FINISHED")


def _publish_folder(final: Path, write: Callable[[Path], object]) -> None:
    """Write a folder beside ``final`` and rename it into place: a reader (serving) never
    loads half of one, and a failed write (a full disk) leaves no partial folder behind."""
    staging, old = final.with_name(f".{final.name}.tmp"), final.with_name(f".{final.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _save_model(prepared: Prepared, run: RunPaths) -> None:
    """The reloadable model: adapter + head (safetensors), tokenizer, label map, model info.

    model_info.json is written last: a run counts as saved (for serving) once it exists.
    """
    _publish_folder(
        run.adapter, lambda d: prepared.model.save_pretrained(str(d), safe_serialization=True)
    )
    _publish_folder(run.tokenizer, lambda d: prepared.tokenizer.save_pretrained(str(d)))
    labels = prepared.labels
    atomic_write_json(run.label_map, {"labels": labels, "id2label": dict(enumerate(labels))})
    atomic_write_json(
        run.model_info,
        {
            "base_model": prepared.base.name,  # what reloads it: a resolved local folder's path
            "base_name": prepared.config.base_model,  # the name users know
            "model_type": prepared.base.model_type,
            "language": prepared.base.language,
            "max_length": prepared.config.max_length,
            "pooling": resolve_pooling(prepared.config.pooling, prepared.config.base_model),
            "labels": labels,
            "precision": prepared.device.precision,
            "loralab_version": __version__,
        },
    )
