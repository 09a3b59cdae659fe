"""Trainer pieces: a non-finite-loss guard and the callback that bridges Trainer events to
progress, tracking, the stop signal, checkpoint markers and best/last/fastest retention.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import (
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from loralab.training import checkpoints as ckpt
from loralab.training.config import TrainConfig
from loralab.training.errors import TrainingFailed
from loralab.training.interfaces import (
    CheckpointSink,
    MetricLogger,
    ProgressReporter,
    StopSignal,
)
from loralab.training.runs import RunPaths

log = logging.getLogger("loralab.training")


class GuardedTrainer(Trainer):
    """Trainer that fails clearly on a non-finite loss instead of training on garbage."""

    step_loss = float("nan")

    def compute_loss(  # type: ignore[override]
        self, model: Any, inputs: Any, return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        result: Any = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if model.training:
            loss = result[0] if return_outputs else result
            self.step_loss = float(loss.detach().float())
            if not math.isfinite(self.step_loss):
                raise TrainingFailed(
                    f"loss became {self.step_loss} at step {self.state.global_step + 1}: "
                    "training diverged. Lower learning_rate, or use precision=fp32."
                )
        return result


class RunCallback(TrainerCallback):
    """Bridges Trainer events to progress, tracking, the stop signal and checkpoint retention."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunPaths,
        logger: MetricLogger,
        progress: ProgressReporter,
        stop: StopSignal,
    ) -> None:
        self.config = config
        self.run = run
        self.logger = logger
        self.progress = progress
        self.stop = stop
        self.stopped = False
        self.history: list[dict[str, float]] = []
        self.eval_seconds = 0.0
        self.started = 0.0
        self.finished = 0.0
        self.first_step = 0
        self.last_loss = float("nan")
        self.retention = ckpt.Retention(None, None, None, ())
        self.trainer: GuardedTrainer | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if state.train_batch_size and state.train_batch_size != self.config.batch_size:
            message = (
                f"out of memory at batch size {self.config.batch_size}: "
                f"training with batch size {state.train_batch_size}"
            )
            log.warning(message)
            self.progress.note(message)
        self.started = time.perf_counter()
        self.first_step = state.global_step
        self.progress.start(state.max_steps)
        self.progress.advance(state.global_step, {})

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        step_loss = self.trainer.step_loss if self.trainer else float("nan")
        scheduler = kw.get("lr_scheduler")
        per_step = {"train_loss": step_loss}
        if scheduler is not None:
            per_step["learning_rate"] = float(scheduler.get_last_lr()[0])
        self.logger.log_metrics(per_step, state.global_step)
        # The bar shows the logged (averaged) loss; before the first log, the step's own loss.
        shown = self.last_loss if math.isfinite(self.last_loss) else step_loss
        self.progress.advance(state.global_step, {"loss": shown})
        if self.stop.is_set() and not self.stopped:
            self.stopped = True
            self.progress.note("stop requested: evaluating and saving a last checkpoint")
            log.info("stop requested at step %d", state.global_step)
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
            metrics = {"train_loss_avg": self.last_loss}
            if "learning_rate" in logs:
                metrics["learning_rate"] = float(logs["learning_rate"])
            if "grad_norm" in logs:
                metrics["grad_norm"] = float(logs["grad_norm"])
            self.logger.log_metrics(
                {k: v for k, v in metrics.items() if k != "learning_rate"}, state.global_step
            )
            log.info(
                "step %d epoch %.2f %s",
                state.global_step,
                state.epoch or 0.0,
                " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
            )

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        metrics = metrics or {}
        self.eval_seconds += float(metrics.get("eval_runtime", 0.0))
        values = {
            k.removeprefix("eval_"): float(v)
            for k, v in metrics.items()
            if k in {"eval_loss", "eval_accuracy", "eval_macro_f1"}
        }
        entry = {"step": float(state.global_step), "epoch": float(state.epoch or 0.0), **values}
        self.history.append(entry)
        self.logger.log_metrics({f"val_{k}": v for k, v in values.items()}, state.global_step)
        log.info(
            "evaluation at step %d: %s",
            state.global_step,
            " ".join(f"{k}={v:.4f}" for k, v in values.items()),
        )
        self.progress.note(
            f"eval step {state.global_step}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items())
        )

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        output_dir = Path(str(args.output_dir))
        folder = output_dir / f"checkpoint-{state.global_step}"
        metric = next(
            (
                h.get(self.config.metric_for_best)
                for h in reversed(self.history)
                if int(h["step"]) == state.global_step
            ),
            None,
        )
        if folder.is_dir():
            ckpt.mark_complete(folder, state.global_step, metric)
        self.retention = ckpt.apply_retention(
            output_dir,
            self.config.metric_for_best != "loss",
            self.config.fastest_tolerance,
        )
        if isinstance(self.logger, CheckpointSink):
            # the new copy first, then the deletions: a crash between leaves one copy too many
            if folder.is_dir():
                self.logger.save_checkpoint(folder, [self.run.config, self.run.state])
            doomed = [output_dir / f"checkpoint-{step}" for step in self.retention.delete]
            self.logger.drop_checkpoints(doomed)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.finished = time.perf_counter()
        self.progress.finish()
